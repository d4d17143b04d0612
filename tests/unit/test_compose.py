"""docker-compose.yml can't run here (no Docker engine): check it against the settings code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.settings import Settings, load
from shouwang.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if s.get("image") == "shouwang:latest"}


def _settings(service: dict, monkeypatch: pytest.MonkeyPatch) -> Settings:  # type: ignore[type-arg]
    for key, value in service["environment"].items():
        # ${VAR:?...} is compose's "required from the environment": any value will do here.
        monkeypatch.setenv(key, "test-secret" if str(value).startswith("${") and "@" not in
                           str(value) else str(value))
    config = service["command"][service["command"].index("--config") + 1]
    mounts = dict(v.split(":")[1::-1] for v in service["volumes"])  # container -> host
    return load(ROOT / mounts[config].removeprefix("./"))


def test_the_stack_has_brokers_database_and_every_service() -> None:
    assert {"mosquitto", "kafka", "timescaledb"} <= set(SERVICES)
    assert set(OURS) == {"migrate", "ingest", "detect", "alert", "console", "sink"}
    assert SERVICES["timescaledb"]["image"].startswith("timescale/timescaledb")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_service_command_and_environment_are_valid(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    service = OURS[name]
    args = _parser().parse_args(service["command"])
    assert args.command == name
    settings = _settings(service, monkeypatch)
    assert settings.bus.kind == "kafka"
    kafka_env = SERVICES["kafka"]["environment"]
    assert f"PLAINTEXT://{settings.bus.kafka_bootstrap}" == kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert settings.mqtt.host in SERVICES
    assert settings.database.dsn is not None
    assert "@timescaledb:5432/" in settings.database.dsn
    mosquitto_conf = (ROOT / "config/mosquitto/mosquitto.conf").read_text()
    assert f"listener {settings.mqtt.port} 0.0.0.0" in mosquitto_conf


def test_published_ports_match_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _settings(OURS["console"], monkeypatch)
    assert OURS["console"]["ports"] == [f"{console.console.port}:{console.console.port}"]
    assert console.console.host == "0.0.0.0"
    sink = _settings(OURS["sink"], monkeypatch)
    alert = _settings(OURS["alert"], monkeypatch)
    for receiver in alert.alerting.receivers:
        assert all(url.startswith(f"json://sink:{sink.sink.port}/") for url in receiver.urls)
    assert SERVICES["mosquitto"]["ports"] == ["1883:1883", "8883:8883"]


def test_the_broker_gets_the_files_its_config_names() -> None:
    conf = (ROOT / "config/mosquitto/mosquitto.conf").read_text().splitlines()
    named = {line.split()[1] for line in conf
             if line.split()[:1] in (["password_file"], ["acl_file"], ["cafile"],
                                     ["certfile"], ["keyfile"])}
    mounted = [v.split(":")[1] for v in SERVICES["mosquitto"]["volumes"]]
    for path in named:
        assert any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounted), path
    assert "allow_anonymous false" in conf
