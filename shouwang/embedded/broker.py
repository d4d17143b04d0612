"""An MQTT broker started with the application, for the "embedded default".

Why this exists: with no MQTT broker configured, devices and the ingest pipeline still need one on
the laptop or gateway box. Mosquitto is preferred where it is installed (Debian package
``mosquitto``): it is fast, persists sessions and queued QoS 1/2 messages to disk and takes
limits we rely on. Elsewhere the pure-Python ``amqtt`` broker runs inside our event loop, so a
plain ``pip install`` still gives a working system.

Mosquitto runs as a child process with a config generated into ``data_dir`` at every start; its
log lines are forwarded to this module's logger. A lock file (``data_dir/broker.lock``) keeps a
second process off the same ``data_dir``, and a Mosquitto left running by a killed run (found by
``data_dir/mosquitto.pid``) is stopped before a new one starts. As root, Mosquitto drops to the
``mosquitto`` user, which then owns ``data_dir`` (give the broker a directory of its own).

amqtt limits, compared with Mosquitto: sessions and queued messages live in memory only (lost at
restart), MQTT 3.1.1 only, no inflight/queue/packet-size limits, and the broker's work shares the
application's event loop. amqtt marks every anonymous session "anonymous" and then drops it at
disconnect with its queued messages, so we install an accept-all auth plugin instead; persistent
sessions (``clean_session=False``) then keep QoS 1 messages while their client is away.

Nothing here reads ``os.environ``: Mosquitto is looked for in ``search_path`` (system directories
by default; Debian puts it in /usr/sbin, outside a normal user's PATH).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError"]

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_PATH = (  # Debian puts mosquitto in /usr/sbin; Homebrew on macOS in /opt/homebrew
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/homebrew/sbin"
)
MOSQUITTO_USER = "mosquitto"  # Mosquitto drops to this user when started as root
_AUTH_PLUGIN = "_AmqttAcceptAllAuth"  # built on first use: amqtt is optional


class EmbeddedBrokerError(RuntimeError):
    """The embedded MQTT broker could not be started."""


class EmbeddedBroker:
    """Run an MQTT broker on ``host:port`` (port 0 picks a free one) while the context is open.

    ``kind`` tells which one runs: ``"mosquitto"`` when the executable is found (or given as
    ``mosquitto_path``) and ``prefer_mosquitto`` is true, else ``"amqtt"``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        data_dir: Path,
        prefer_mosquitto: bool = True,
        mosquitto_path: str | None = None,
        search_path: str = DEFAULT_SEARCH_PATH,
        start_timeout: float = 10.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise EmbeddedBrokerError(f"invalid port {port}")
        self.host = host
        self.requested_port = port
        self.port = port  # the actual one once started
        self.data_dir = Path(data_dir).absolute()
        if any(c.isspace() for c in f"{host}{self.data_dir}"):
            raise EmbeddedBrokerError("host and data_dir must not contain spaces (mosquitto.conf)")
        self._mosquitto = (
            (mosquitto_path or shutil.which("mosquitto", path=search_path))
            if prefer_mosquitto
            else None
        )
        self._start_timeout = start_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._recent: list[str] = []  # last Mosquitto log lines, for error messages
        self._amqtt: Any = None  # amqtt.broker.Broker; amqtt is typed loosely
        self._lock_fd: int | None = None

    @property
    def kind(self) -> Literal["mosquitto", "amqtt"]:
        """Which broker runs (or will run)."""
        return "mosquitto" if self._mosquitto else "amqtt"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.stop())

    async def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self.port = self.requested_port or _free_port(self.host)
            if self._mosquitto:
                await self._stop_leftover_mosquitto()
            if not _port_free(self.host, self.port):
                raise EmbeddedBrokerError(f"{self.host}:{self.port} is already in use")
            if self._mosquitto:
                await self._start_mosquitto(self._mosquitto)
                await self._wait_accepting()
            else:
                await self._start_amqtt()  # listening once this returns
        except BaseException:
            await asyncio.shield(self.stop())
            raise
        logger.info(
            "embedded MQTT broker (%s) listening on %s:%d, started in %.2f s",
            self.kind,
            self.host,
            self.port,
            time.monotonic() - began,
        )

    async def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 10 s). Safe to call repeatedly."""
        try:
            if self._proc is not None:
                await _terminate(self._proc)
                (self.data_dir / "mosquitto.pid").unlink(missing_ok=True)
                logger.info("embedded Mosquitto stopped")
            if self._amqtt is not None:
                await self._amqtt.shutdown()
                logger.info("embedded amqtt broker stopped")
        finally:
            self._proc = self._amqtt = None
            if self._log_task is not None:
                await self._log_task  # ends at EOF, once the process is gone
                self._log_task = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- Mosquitto -------------------------------------------------------------------------

    async def _start_mosquitto(self, executable: str) -> None:
        conf = self.data_dir / "mosquitto.conf"
        lines = [
            "# generated by shouwang at every start: edits are lost",
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "max_packet_size 1048576",
            "log_dest stderr",
            "log_timestamp false",
        ]
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam(MOSQUITTO_USER)
            except KeyError:
                raise EmbeddedBrokerError(
                    f"running as root: Mosquitto would drop to user {MOSQUITTO_USER!r}, "
                    "which does not exist; create it or pass prefer_mosquitto=False"
                ) from None
            lines.append(f"user {MOSQUITTO_USER}")
            for path in (self.data_dir, self.data_dir / "mosquitto.db"):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(path, entry.pw_uid, entry.pw_gid)  # it saves mosquitto.db there
        conf.write_text("\n".join(lines) + "\n")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                executable,
                "-c",
                str(conf),
                cwd=self.data_dir,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for us must not kill it first
            )
        except OSError as err:
            raise EmbeddedBrokerError(f"cannot run {executable}: {err}") from err
        (self.data_dir / "mosquitto.pid").write_text(f"{self._proc.pid}\n")
        assert self._proc.stderr is not None
        self._log_task = asyncio.create_task(self._forward_log(self._proc.stderr))

    async def _forward_log(self, stream: asyncio.StreamReader) -> None:
        async for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            self._recent = [*self._recent[-19:], line]
            level = logging.WARNING if line.startswith(("Error", "Warning")) else logging.DEBUG
            logger.log(level, "mosquitto: %s", line)

    async def _stop_leftover_mosquitto(self) -> None:
        """Terminate a Mosquitto a killed earlier run left on this data_dir."""
        pidfile = self.data_dir / "mosquitto.pid"
        try:
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            return
        if str(self.data_dir / "mosquitto.conf").encode() in cmdline:
            logger.warning("stopping Mosquitto (pid %d) left running by an earlier run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _running(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)

    # -- amqtt -----------------------------------------------------------------------------

    async def _start_amqtt(self) -> None:
        try:
            from amqtt.broker import Broker
        except ImportError as err:
            raise EmbeddedBrokerError(
                "no MQTT broker available: install the Debian package 'mosquitto' "
                "or the Python package 'amqtt'"
            ) from err
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {f"{__name__}.{_AUTH_PLUGIN}": {}},
        }
        _define_amqtt_auth_plugin()
        quiet = logging.getLogger("transitions")  # amqtt's state machines log each step at INFO
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as err:  # amqtt raises BrokerError wrapping the cause
            raise EmbeddedBrokerError(f"amqtt broker failed to start: {err}") from err
        self._amqtt = broker

    # -- common ----------------------------------------------------------------------------

    def _lock(self) -> None:
        path = self.data_dir / "broker.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmbeddedBrokerError(
                f"{self.data_dir} is in use by another broker process (it holds {path})"
            ) from None
        self._lock_fd = fd

    async def _wait_accepting(self) -> None:
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc is not None and self._proc.returncode is not None:
                await asyncio.sleep(0.05)  # let the log reader catch the last lines
                raise EmbeddedBrokerError(
                    f"mosquitto exited with code {self._proc.returncode}:\n"
                    + "\n".join(self._recent)
                )
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if time.monotonic() > deadline:
                    raise EmbeddedBrokerError(
                        f"{self.kind} did not accept connections on {self.host}:{self.port} "
                        f"within {self._start_timeout} s"
                    ) from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


def _define_amqtt_auth_plugin() -> None:
    """Define the accept-all amqtt auth plugin as a module attribute amqtt can import by name."""
    if _AUTH_PLUGIN in globals():
        return
    from amqtt.plugins.base import BaseAuthPlugin

    class AcceptAllAuth(BaseAuthPlugin):  # type: ignore[misc]  # amqtt may be untyped here
        """Accept every client without marking its session anonymous (which drops it)."""

        async def authenticate(self, *, session: Any) -> bool:
            return True

    AcceptAllAuth.__name__ = AcceptAllAuth.__qualname__ = _AUTH_PLUGIN
    globals()[_AUTH_PLUGIN] = AcceptAllAuth


async def _terminate(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            logger.warning("broker pid %d ignored SIGTERM for %.0f s: killing it", proc.pid, grace)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _running(pid: int) -> bool:
    """Whether pid is a live process (not gone, not a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _family(host: str) -> socket.AddressFamily:
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]


def _free_port(host: str) -> int:
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(host: str, port: int) -> bool:
    """Whether a broker could bind host:port (both brokers set SO_REUSEADDR)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True
