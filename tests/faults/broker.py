"""A private Mosquitto for fault tests: its own port and data dir, so stopping, killing or
starving it never touches the shared test broker other tests are using."""

from __future__ import annotations

import contextlib
import getpass
import re
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["SHIPPED_SETTINGS", "PrivateMosquitto", "free_port", "shipped_settings"]

_ROOT = Path(__file__).resolve().parents[2]
_MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
# The same keys scripts/services.sh copies from the shipped config into the test broker.
_SHARED_KEYS = re.compile(
    r"^\s*(persistence|autosave_interval|max_queued_messages|max_queued_bytes|"
    r"max_inflight_messages|max_inflight_bytes|max_packet_size|message_size_limit|"
    r"queue_qos0_messages|set_tcp_nodelay|max_keepalive)\s", re.MULTILINE)


def shipped_settings() -> list[str]:
    text = (_ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text()
    return [line.strip() for line in text.splitlines() if _SHARED_KEYS.match(line)]


SHIPPED_SETTINGS = tuple(shipped_settings())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateProcess(ABC):
    """A server process a fault test owns: ``with`` starts it, ``stop`` ends it.

    ``stop()`` sends SIGTERM (a clean shutdown, waiting ``grace_s``) or, with ``kill``,
    SIGKILL; either way nothing outlives the test.
    """

    grace_s = 15.0
    _process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def start(self) -> None: ...

    def stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class PrivateMosquitto(PrivateProcess):
    """``settings`` are broker config lines; nothing else is set, so ``[]`` means defaults.

    ``stop()`` (SIGTERM) makes the broker save its persistence file; ``kill`` does not.
    """

    def __init__(self, directory: Path, settings: list[str] | tuple[str, ...]) -> None:
        self.directory = directory
        self.port = free_port()
        self._settings = list(settings)
        self._process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        self._conf = directory / "mosquitto.conf"
        self._conf.write_text("\n".join([
            *self._settings,
            f"persistence_location {directory}/data/",
            f"log_dest file {directory}/mosquitto.log",
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
        ]) + "\n")

    def save(self, timeout_s: float = 10.0) -> None:
        """Write the persistence file now (SIGUSR1), as ``autosave_interval`` does on its own
        schedule; returns once the broker has logged the save."""
        assert self._process is not None and self._process.poll() is None
        log = self.directory / "mosquitto.log"
        before = self._saves(log)
        self._process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while self._saves(log) == before:
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto did not save its persistence file")
            time.sleep(0.02)

    @staticmethod
    def _saves(log: Path) -> int:
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count("Saving in-memory database")

    def start(self, timeout_s: float = 20.0) -> None:
        self._process = subprocess.Popen([_MOSQUITTO, "-c", str(self._conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: see {self.directory}/mosquitto.log")
            with contextlib.suppress(OSError), \
                    socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("private mosquitto did not start")
            time.sleep(0.05)

