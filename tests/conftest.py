"""Fixtures for tests against the real services that scripts/services.sh starts.

A required service that is missing or unreachable fails the test; it is never skipped.
Addresses come from SHOUWANG_TEST_* variables, or from .services/env written by
``scripts/services.sh start``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from config.settings import Settings
from shouwang.sink import LocalSink
from shouwang.store import connect, migrate
from tests.integration.local_servers import running_sink

_ROOT = Path(__file__).resolve().parent.parent
_SESSION = uuid.uuid4().hex[:8]


def _service_env() -> dict[str, str]:
    values: dict[str, str] = {}
    env_file = Path(os.environ.get("SHOUWANG_SERVICES_DIR", _ROOT / ".services")) / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip():
                values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k.startswith("SHOUWANG_TEST_")})
    return values


def _required(name: str) -> str:
    value = _service_env().get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the services with `bash scripts/services.sh "
                    "start` (the README's test command does it)", pytrace=False)
    return value


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _reachable(name: str, address: str) -> None:
    try:
        with socket.create_connection(_host_port(address), timeout=3):
            pass
    except OSError as err:
        pytest.fail(f"{name} at {address} is not reachable: {err}", pytrace=False)


@pytest.fixture(scope="session")
def tts_engine() -> str:
    """The local text-to-speech engine for loudspeaker audio, installed like the services."""
    engine = shutil.which("espeak-ng")
    if engine is None:
        pytest.fail("espeak-ng is not installed: `bash scripts/services.sh install` installs "
                    "it (the README's test command does it)", pytrace=False)
    return engine


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    dsn = _required("SHOUWANG_TEST_PG_DSN")
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as err:
        pytest.fail(f"PostgreSQL at {dsn} is not reachable: {err}", pytrace=False)
    return dsn


@pytest.fixture(scope="session")
def mqtt_addr() -> tuple[str, int]:
    address = _required("SHOUWANG_TEST_MQTT")
    _reachable("Mosquitto", address)
    return _host_port(address)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    address = _required("SHOUWANG_TEST_KAFKA")
    _reachable("Kafka", address)
    return address


@pytest.fixture
def data_root() -> Iterator[Path]:
    """A scratch folder for the data dirs of private servers (PostgreSQL, brokers).

    Not tmp_path: as root, PostgreSQL runs as a system user that cannot enter
    /tmp/pytest-of-root.
    """
    root = Path(tempfile.mkdtemp(prefix="shouwang-data-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_id(request: pytest.FixtureRequest) -> str:
    """Unique per test run and test: prefixes topics, groups and schemas."""
    name = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:30]
    return f"t{_SESSION}_{name}_{uuid.uuid4().hex[:6]}"


@pytest.fixture
async def sink() -> AsyncIterator[LocalSink]:
    """A recording stand-in for the SMS provider and broadcast controller."""
    async with running_sink() as local:
        yield local


@pytest.fixture
async def db_schema(pg_dsn: str, run_id: str) -> AsyncIterator[str]:
    """A fresh, migrated schema for one test; dropped afterwards."""
    schema = run_id[:60]
    conn = await connect(pg_dsn, schema)
    try:
        await migrate(conn, schema)
        await conn.commit()
        yield schema
    finally:
        await conn.rollback()
        await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))
        await conn.commit()
        await conn.close()


@pytest.fixture(scope="session", autouse=True)
def _first_admin_password_outside_the_repository(
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A console a test starts with no users writes the first admin's password file; with the
    default ``database.data_dir`` that is the repository's own .shouwang/, where a real
    ``bash scripts/run`` keeps its data. Such files go to a temporary directory instead."""
    from console import first_admin

    derived = first_admin.first_password_file
    spare = tmp_path_factory.mktemp("first-admin")

    def outside_the_repository(settings: Settings) -> Path:
        path = derived(settings)
        return spare / path.name if path.is_relative_to(_ROOT) else path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(first_admin, "first_password_file", outside_the_repository)
        yield
