"""The embedded default end to end: `shouwang run` in a subprocess, with its own PostgreSQL
(pip-installed server) and MQTT broker, a gas leak among normal devices, then Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import psycopg
import pytest
import yaml

from tests.integration.console_auth import log_in
from tests.integration.e2e import LEAK_DEVICE, community, eventually, stream
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def work_dir() -> Iterator[Path]:
    # The embedded PostgreSQL runs as an unprivileged user that must reach its data dir;
    # pytest's tmp_path lives under a root-only (0700) directory.
    path = Path(tempfile.mkdtemp(prefix="shouwang-embedded-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


async def test_shouwang_run_embedded_gas_leak(work_dir: Path) -> None:
    pg_port, mqtt_port, console_port, sink_port = (_free_port() for _ in range(4))
    settings = community(sink_port)
    settings.update({
        "database": {"data_dir": str(work_dir / "pg"), "port": pg_port},
        "mqtt": {"port": mqtt_port, "data_dir": str(work_dir / "mqtt")},
        "console": {"port": console_port},
        "sink": {"enabled": True, "port": sink_port},
        "simulator": {"enabled": False},
        "detectors": {"offline_check_s": 1.0},
    })
    config = work_dir / "run.yaml"
    config.write_text(yaml.safe_dump(settings, allow_unicode=True))
    log = work_dir / "run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOUWANG_")}
    proc = subprocess.Popen([sys.executable, "-m", "shouwang.cli", "run", "--config", str(config)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    console = f"http://127.0.0.1:{console_port}"
    try:
        async with httpx.AsyncClient(base_url=console, timeout=5) as client:
            async def console_up() -> bool:
                assert proc.poll() is None, log.read_text()[-4000:]
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(console_up, 120, "the console of `shouwang run`")
            # The first start creates an admin; its password is in a 0600 file in the data
            # directory, and the log only says where.
            password_file = work_dir / "first-admin.password"

            async def admin_created() -> bool:
                return f"its password is in {password_file}" in log.read_text()

            await eventually(admin_created, 30, "the first admin announced in the log")
            assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
            first_password = password_file.read_text().strip()
            await log_in(client, "admin", first_password)
            assert first_password not in log.read_text()
            messages, readings = stream("shouwang/v1", settings)
            assert publish_all(("127.0.0.1", mqtt_port), messages) == len(messages)

            password = (work_dir / "pg" / "shouwang-superuser.password").read_text().strip()
            dsn = f"postgresql://postgres:{quote(password, safe='')}@127.0.0.1:{pg_port}/shouwang"

            async def all_landed() -> bool:
                async with await psycopg.AsyncConnection.connect(dsn) as conn:
                    cur = await conn.execute("SELECT count(*) FROM readings")
                    row = await cur.fetchone()
                    return row is not None and row[0] == readings

            await eventually(all_landed, 60, "every published reading in the database")

            async def alert_open() -> bool:
                found = (await client.get("/api/alerts", params={"status": "open"})).json()
                return [a["device_id"] for a in found] == [LEAK_DEVICE]

            await eventually(alert_open, 30, "the gas alert on the console")
            sink = f"http://127.0.0.1:{sink_port}/messages"

            async def both_sent() -> bool:
                channels = [m["channel"] for m in (await client.get(sink)).json()]
                return sorted(channels) == ["broadcast", "sms"]

            await eventually(both_sent, 30, "one SMS and one broadcast at the sink")
            notifications = (await client.get("/api/notifications")).json()
            assert sorted(n["channel"] for n in notifications) == ["broadcast", "sms"]
            assert all(n["status"] == "sent" for n in notifications)

            alert_id = (await client.get("/api/alerts", params={"status": "open"})).json()[0]["id"]
            acked = await client.post(f"/api/alerts/{alert_id}/ack")
            assert acked.status_code == 200
            detail = (await client.get(f"/api/alerts/{alert_id}")).json()
            assert detail["status"] == "acknowledged"
            assert [e["actor"] for e in detail["events"] if e["to_status"] == "acknowledged"] \
                == ["admin"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-4000:]
