"""Settings for every service: one YAML file, overridden by ``SHOUWANG_*`` variables.

``load()`` is called once, in ``main()``; the typed, frozen object is passed down. A bad
file fails at startup with the key and the reason (``ConfigError``), before the first
message arrives. Secrets come from the environment (``SHOUWANG_MQTT__PASSWORD``,
``SHOUWANG_DATABASE__DSN``), never from the committed YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from shouwang.catalog import DeviceType
from shouwang.models import Device, Location, Severity, Site

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AlertingSettings",
    "BusSettings",
    "ConfigError",
    "ConsoleSettings",
    "DatabaseSettings",
    "DetectorSettings",
    "DeviceConfig",
    "IngestSettings",
    "MetricsSettings",
    "MqttSettings",
    "Receiver",
    "Route",
    "ScenarioRun",
    "Settings",
    "SimulatorSettings",
    "SinkSettings",
    "SiteConfig",
    "ThresholdRule",
    "load",
]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad key and why."""


class DatabaseSettings(_Section):
    dsn: str | None = Field(default=None, description="libpq URI; unset = embedded server")
    data_dir: Path = Path(".shouwang/pg")
    port: int = Field(default=0, ge=0, le=65535, description="embedded server port, 0 = any")
    pool_size: int = Field(default=8, ge=2, le=100)
    schema_name: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]*$")


class MqttSettings(_Section):
    host: str | None = Field(default=None, description="unset = start the embedded broker")
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "shouwang-ingest"
    # Shared subscription group: several ingestors split the device load.
    share_group: str | None = None
    topic_root: str = "shouwang/v1"
    data_dir: Path = Path(".shouwang/mqtt")


class BusSettings(_Section):
    kind: Literal["memory", "kafka"] = "memory"
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1, le=1024)


class IngestSettings(_Section):
    batch_max_messages: int = Field(default=5000, ge=1)
    flush_ms: int = Field(default=50, ge=1, le=10_000)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    max_readings_per_message: int = Field(default=500, ge=1)
    queue_max_messages: int = Field(default=100_000, ge=100)


class MetricsSettings(_Section):
    """Prometheus exposition for a single-service process (the console serves /metrics too)."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 = no metrics server")


class ThresholdRule(_Section):
    """Levels for one metric of one device type: crossing level i raises severity i."""

    device_type: DeviceType
    metric: str
    hazard: str
    direction: Literal["above", "below"] = "above"
    levels: tuple[float, ...] = Field(min_length=1, max_length=4)
    severities: tuple[Literal["blue", "yellow", "orange", "red"], ...] = Field(min_length=1)
    hysteresis: float = Field(ge=0)
    source: str = Field(description="the standard or reasoning behind the numbers")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if len(self.severities) != len(self.levels):
            raise ValueError("severities needs one entry per level")
        ordered = sorted(self.levels, reverse=self.direction == "below")
        if list(self.levels) != ordered or len(set(self.levels)) != len(self.levels):
            trend = "decreasing" if self.direction == "below" else "increasing"
            raise ValueError(f"levels must be strictly {trend}")
        return self

    def severity(self, level: int) -> Severity:
        return Severity[self.severities[level - 1].upper()]


# Defaults cite their source; config/community.example.yaml repeats them with comments.
DEFAULT_THRESHOLDS: tuple[ThresholdRule, ...] = (
    ThresholdRule(device_type=DeviceType.GAS, metric="lel", hazard="gas", levels=(25.0, 50.0),
                  severities=("orange", "red"), hysteresis=5.0,
                  source="GB/T 50493-2019 §5.5: combustible gas level-1 alarm ≤25 %LEL, "
                         "level-2 ≤50 %LEL"),
    ThresholdRule(device_type=DeviceType.GAS, metric="co", hazard="co", levels=(50.0, 150.0),
                  severities=("orange", "red"), hysteresis=10.0,
                  source="EN 50291-1 household CO alarms: 50 ppm alarm within 60-90 min, "
                         "150 ppm and above within minutes"),
    ThresholdRule(device_type=DeviceType.SMOKE, metric="smoke", hazard="smoke", levels=(3.0, 8.0),
                  severities=("orange", "red"), hysteresis=1.0,
                  source="GB 4715-2005 / EN 54-7 point smoke detector response range "
                         "(~0.13 dB/m = 3 %obs/m)"),
    ThresholdRule(device_type=DeviceType.SMOKE, metric="alarm", hazard="smoke", levels=(0.5,),
                  severities=("red",), hysteresis=0.0,
                  source="the detector's own alarm output (GB 4715-2005 certified)"),
    ThresholdRule(device_type=DeviceType.SMOKE, metric="temperature", hazard="heat",
                  levels=(54.0, 65.0), severities=("orange", "red"), hysteresis=3.0,
                  source="GB 4716-2005 / EN 54-5 class A1 heat detector: 54-65 °C"),
    ThresholdRule(device_type=DeviceType.WATER, metric="level", hazard="flood", levels=(0.3, 0.5),
                  severities=("yellow", "red"), hysteresis=0.05,
                  source="site marks (no national standard): 0.3 m reaches car exhausts in a "
                         "garage, 0.5 m makes walking unsafe; override per device"),
    ThresholdRule(device_type=DeviceType.ELECTRICAL, metric="residual_current",
                  hazard="electrical_leak", levels=(300.0, 500.0), severities=("orange", "red"),
                  hysteresis=30.0,
                  source="GB 50116-2013 §9.2.3: residual-current alarm set at 300-500 mA"),
    ThresholdRule(device_type=DeviceType.ELECTRICAL, metric="temperature", hazard="overheat",
                  levels=(60.0, 70.0), severities=("orange", "red"), hysteresis=3.0,
                  source="GB 14287.4 temperature detectors; 70 °C is PVC cable insulation's "
                         "maximum operating temperature (GB/T 5023)"),
    ThresholdRule(device_type=DeviceType.WEARABLE, metric="heart_rate", hazard="heart_rate_high",
                  levels=(120.0, 150.0), severities=("yellow", "orange"), hysteresis=5.0,
                  source="resting tachycardia >100 bpm (AHA); margin for activity"),
    ThresholdRule(device_type=DeviceType.WEARABLE, metric="heart_rate", hazard="heart_rate_low",
                  direction="below", levels=(45.0, 35.0), severities=("yellow", "orange"),
                  hysteresis=5.0, source="bradycardia <60 bpm (AHA); margin for sleep"),
)


class DetectorSettings(_Section):
    thresholds: tuple[ThresholdRule, ...] = DEFAULT_THRESHOLDS
    offline_after_intervals: float = Field(default=3.0, gt=1.0,
                                           description="offline after N missed reports")
    offline_check_s: float = Field(default=5.0, gt=0)
    group: str = "detectors"


class Receiver(_Section):
    """A person or endpoint with one channel; ``urls`` are apprise URLs."""

    name: str
    channel: Literal["sms", "broadcast", "wecom", "dingtalk", "feishu", "email", "webhook"]
    urls: tuple[str, ...] = Field(min_length=1)


class Route(_Section):
    site: str = "*"
    hazards: tuple[str, ...] = ("*",)
    kinds: tuple[Literal["hazard", "health", "anomaly"], ...] = ("hazard",)
    min_severity: Literal["blue", "yellow", "orange", "red"] = "blue"
    receivers: tuple[str, ...] = Field(min_length=1)

    def matches(self, *, site: str, hazard: str, kind: str, severity: Severity) -> bool:
        return ((self.site in ("*", site)) and ("*" in self.hazards or hazard in self.hazards)
                and kind in self.kinds and severity >= Severity[self.min_severity.upper()])


class AlertingSettings(_Section):
    receivers: tuple[Receiver, ...] = ()
    routes: tuple[Route, ...] = ()
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    language: Literal["zh", "en"] = "zh"
    group: str = "alerting"

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> Self:
        names = {r.name for r in self.receivers}
        for index, route in enumerate(self.routes):
            missing = [n for n in route.receivers if n not in names]
            if missing:
                raise ValueError(f"routes[{index}] names unknown receivers {missing}")
        return self


class ConsoleSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


class SinkSettings(_Section):
    """The local stand-in for the far end (SMS provider, broadcast controller)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)


class ScenarioRun(_Section):
    scenario: str
    device_id: str
    start_after_s: float = Field(default=60.0, ge=0)


class SimulatorSettings(_Section):
    enabled: bool = True
    seed: int = 7
    speed: float = Field(default=1.0, gt=0, description="1.0 = real time")
    scenarios: tuple[ScenarioRun, ...] = ()


class SiteConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str
    address: str = ""

    def to_site(self) -> Site:
        return Site(id=self.id, name=self.name, address=self.address)


class DeviceConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    type: DeviceType
    site: str
    name: str = ""
    building: str = ""
    unit: str = ""
    floor: str = ""
    room: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    report_interval_s: float = Field(default=60.0, gt=0)
    thresholds: dict[str, tuple[float, float]] = Field(default_factory=dict)

    def to_device(self) -> Device:
        return Device(
            id=self.id, type=self.type, site=self.site, name=self.name,
            location=Location(building=self.building, unit=self.unit, floor=self.floor,
                              room=self.room, lat=self.lat, lon=self.lon),
            report_interval_s=self.report_interval_s, thresholds=dict(self.thresholds),
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOUWANG_", env_nested_delimiter="__",
                                      frozen=True, extra="forbid")

    database: DatabaseSettings = DatabaseSettings()
    mqtt: MqttSettings = MqttSettings()
    bus: BusSettings = BusSettings()
    ingest: IngestSettings = IngestSettings()
    detectors: DetectorSettings = DetectorSettings()
    alerting: AlertingSettings = AlertingSettings()
    console: ConsoleSettings = ConsoleSettings()
    metrics: MetricsSettings = MetricsSettings()
    sink: SinkSettings = SinkSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    sites: tuple[SiteConfig, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML file (passed in as init values).
        return env_settings, init_settings, file_secret_settings

    @model_validator(mode="after")
    def _cross_check(self) -> Self:
        site_ids = {s.id for s in self.sites}
        seen: set[str] = set()
        for index, device in enumerate(self.devices):
            if device.site not in site_ids:
                raise ValueError(f"devices[{index}] ({device.id}) names unknown site "
                                 f"{device.site!r}")
            if device.id in seen:
                raise ValueError(f"devices[{index}]: duplicate device id {device.id!r}")
            seen.add(device.id)
        for index, run in enumerate(self.simulator.scenarios):
            if run.device_id not in seen:
                raise ValueError(f"simulator.scenarios[{index}] names unknown device "
                                 f"{run.device_id!r}")
        return self

    def site_map(self) -> dict[str, Site]:
        return {s.id: s.to_site() for s in self.sites}

    def device_map(self) -> dict[str, Device]:
        return {d.id: d.to_device() for d in self.devices}


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(part) for part in e["loc"]) or "(top level)"
        lines.append(f"  {key}: {e['msg']}")
    return "invalid configuration:\n" + "\n".join(lines)


def load(path: Path | None = None, **overrides: Any) -> Settings:  # Any: nested YAML values
    """Read ``path`` (YAML), apply ``SHOUWANG_*`` overrides, validate everything once."""
    data: dict[str, Any] = {}  # Any: raw YAML before validation
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"cannot read config file {path}: {err.strerror}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded or {}
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as err:
        raise ConfigError(_describe(err)) from err
