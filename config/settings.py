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
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from shouwang.catalog import DeviceType
from shouwang.models import Device, Location, Severity, Site

__all__ = [
    "DEFAULT_CORRELATIONS",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_RATE_OF_RISE",
    "DEFAULT_THRESHOLDS",
    "AlertingSettings",
    "AnomalySettings",
    "BusSettings",
    "ChannelLimit",
    "ConfigError",
    "ConsoleSettings",
    "CorrelationRule",
    "DatabaseSettings",
    "DetectorSettings",
    "DeviceConfig",
    "EscalationPolicy",
    "EscalationStep",
    "ForecastSettings",
    "HealthSettings",
    "IngestSettings",
    "InhibitRule",
    "MetricsSettings",
    "MqttSettings",
    "OnCallShift",
    "RateOfRiseRule",
    "Receiver",
    "Recipient",
    "RecipientGroup",
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
    # The persistent session's name; "{hostname}" keeps scaled-out ingestors apart.
    client_id: str = "shouwang-ingest-{hostname}"
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


class ForecastSettings(_Section):
    """Pre-warnings: a robust trend (Sen's slope, Mann-Kendall test) projected to level 1.

    The test needs ``min_samples`` readings over at least ``min_span_s`` seconds and a
    trend significant at ``z_fire`` (3.0 ~ p < 0.0015 one-sided) on every reading for
    ``confirm_s`` seconds, and the projected crossing must lie within ``horizon_s``:
    that keeps sensor noise and short nuisance bursts quiet.
    """

    # Not co or smoke (bench/drill_quality.py measures it): CO level 1 is a dose limit
    # (EN 50291: 50 ppm alarms only after 60-90 min), not a moment of danger to forecast,
    # and fires that matter pass 3 %obs/m of smoke in seconds (no lead to gain), while
    # cooking and shower steam rise to 60-75 % of those levels at a steady pace many
    # times a day: 662 false pre-warnings per 1,000 device-days with them, 0 without.
    metrics: tuple[str, ...] = ("lel", "temperature", "level", "residual_current")
    window_s: float = Field(default=600.0, gt=0)
    max_samples: int = Field(default=12, ge=4, le=64)
    min_samples: int = Field(default=8, ge=4)
    min_span_s: float = Field(default=20.0, ge=0)
    horizon_s: float = Field(default=600.0, gt=0, description="longest forecast that warns")
    urgent_s: float = Field(default=120.0, gt=0, description="forecasts this close are YELLOW")
    watch_fraction: float = Field(default=0.2, ge=0, lt=1,
                                  description="evaluate only above this share of level 1")
    z_fire: float = Field(default=3.0, gt=0)
    z_clear: float = Field(default=1.0, ge=0)
    confirm_s: float = Field(default=30.0, ge=0,
                             description="the condition must hold this long before warning")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_samples > self.max_samples:
            raise ValueError("min_samples must be <= max_samples")
        if self.z_clear >= self.z_fire:
            raise ValueError("z_clear must be below z_fire")
        return self


class RateOfRiseRule(_Section):
    """A rise faster than ``rate_per_min`` is a hazard even below the fixed levels."""

    device_type: DeviceType
    metric: str
    hazard: str
    rate_per_min: float = Field(gt=0)
    severity: Literal["blue", "yellow", "orange", "red"] = "orange"
    source: str


DEFAULT_RATE_OF_RISE: tuple[RateOfRiseRule, ...] = (
    RateOfRiseRule(device_type=DeviceType.SMOKE, metric="temperature", hazard="heat_rise",
                   rate_per_min=8.3, severity="orange",
                   source="NFPA 72 §17.6 / UL 521 rate-of-rise heat detectors: 15 °F (8.3 °C) "
                          "per minute"),
    RateOfRiseRule(device_type=DeviceType.ELECTRICAL, metric="temperature",
                   hazard="overheat_rise", rate_per_min=5.0, severity="yellow",
                   source="a loaded cable settles with a ~10 min thermal lag (< 2 °C/min); "
                          "faster means a loose terminal or arcing (GB 14287.4 practice)"),
)


class HealthSettings(_Section):
    """Sensor-health checks; findings are HEALTH and route to maintenance."""

    stuck_samples: int = Field(default=30, ge=3, le=1000,
                               description="this many identical readings in a row = stuck")
    # Not water level or temperature: a still sump or a quiet room reads the same
    # centimetre or degree for hours, and that is normal. Noisy signals only.
    stuck_metrics: tuple[str, ...] = ("lel", "co", "smoke", "residual_current", "current",
                                      "heart_rate")
    battery_low: float = Field(default=20.0, ge=0, le=100,
                               description="%; EN 14604 wants a low-battery warning at least "
                                           "30 days before failure, 20 % leaves that margin")
    battery_clear: float = Field(default=25.0, ge=0, le=100)
    seq_window: int = Field(default=50, ge=5, le=10_000,
                            description="messages per loss/duplicate evaluation")
    seq_loss_ratio: float = Field(default=0.2, gt=0, le=1)
    seq_duplicate_ratio: float = Field(default=0.2, gt=0, le=1)
    seq_reset_gap: int = Field(default=1000, ge=10,
                               description="seq falling by more is a device restart")
    max_clock_skew_s: float = Field(default=300.0, gt=0)
    clock_skew_samples: int = Field(default=3, ge=1, le=100,
                                    description="skewed readings in a row before firing")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.battery_clear < self.battery_low:
            raise ValueError("battery_clear must be >= battery_low")
        return self


class CorrelationRule(_Section):
    """Several findings in one place within a window mean more than each alone.

    ``hazards`` must all fire (``min_devices`` distinct devices in total) within
    ``window_s`` in the same ``scope`` (room, building or site); then one detection of
    ``result_hazard`` at ``severity`` fires. ``suppress`` marks findings the result
    explains (a building-wide outage explains each device going offline), which are
    then not published one by one.
    """

    name: str
    hazards: tuple[str, ...] = Field(min_length=1)
    scope: Literal["room", "building", "site"] = "building"
    min_devices: int = Field(default=2, ge=1)
    window_s: float = Field(default=300.0, gt=0)
    result_hazard: str
    kind: Literal["hazard", "health"] = "hazard"
    severity: Literal["blue", "yellow", "orange", "red"] = "red"
    message: str
    suppress: bool = False
    source: str = ""


DEFAULT_CORRELATIONS: tuple[CorrelationRule, ...] = (
    CorrelationRule(name="fire_confirmed", hazards=("smoke", "heat_rise"), scope="room",
                    min_devices=1, window_s=300.0, result_hazard="fire", severity="red",
                    message="烟雾与温度快速上升同时出现，火灾可能性高",
                    source="multi-criteria fire detection (EN 54-29): smoke plus heat "
                           "confirms a fire and rejects steam and dust"),
    CorrelationRule(name="gas_spread", hazards=("gas",), scope="building", min_devices=2,
                    window_s=600.0, result_hazard="gas_spread", severity="red",
                    message="同一楼栋多个燃气探测器报警，泄漏可能扩散",
                    source="two independent sensors agreeing rule out one faulty sensor"),
    CorrelationRule(name="power_outage", hazards=("offline",), scope="building",
                    min_devices=5, window_s=120.0, result_hazard="power_outage",
                    kind="health", severity="yellow", suppress=True,
                    message="同一楼栋多台设备同时离线，疑似停电或网络中断",
                    source="many devices silent at once share a cause (power, gateway)"),
)


class AnomalySettings(_Section):
    """Learned anomaly in the stream: per device metric, a streaming detector behind a
    ``ThresholdFilter``. A score at or above ``threshold`` opens an episode (one ANOMALY
    detection); ``clear_after`` calm readings in a row close it (one more).

    ``ewma`` is the default because it is the one cheap enough for every device metric
    (about 200 bytes and 2 µs per reading); the others keep windows of values. Its
    ``threshold`` 0.75 is a deviation of 12 weighted standard deviations (score
    ``z / (z + 4)``), far outside sensor noise, so an episode is a real change of
    behaviour: a cooking bump, a leak, a failing sensor, not jitter.
    """

    enabled: bool = True
    detector: Literal["ewma", "robust_z", "seasonal", "default", "iforest"] = "ewma"
    threshold: float = Field(default=0.75, gt=0, lt=1,
                             description="scores at or above it are anomalous")
    clear_after: int = Field(default=10, ge=1, le=250,
                             description="calm readings in a row that close an episode")
    # Not battery, rssi, steps or position: they drift or jump by design.
    metrics: tuple[str, ...] = ("lel", "co", "smoke", "temperature", "level",
                                "residual_current", "heart_rate")


class DetectorSettings(_Section):
    thresholds: tuple[ThresholdRule, ...] = DEFAULT_THRESHOLDS
    offline_after_intervals: float = Field(default=3.0, gt=1.0,
                                           description="offline after N missed reports")
    offline_check_s: float = Field(default=5.0, gt=0)
    group: str = "detectors"
    forecast: ForecastSettings = ForecastSettings()
    rate_of_rise: tuple[RateOfRiseRule, ...] = DEFAULT_RATE_OF_RISE
    health: HealthSettings = HealthSettings()
    correlations: tuple[CorrelationRule, ...] = DEFAULT_CORRELATIONS
    snapshot_interval_s: float = Field(default=30.0, gt=0,
                                       description="detector state saved to PostgreSQL")
    anomaly: AnomalySettings = AnomalySettings()


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


_Colour = Literal["blue", "yellow", "orange", "red"]


class OnCallShift(_Section):
    """When a recipient is on duty, in ``AlertingSettings.timezone``; ``end`` < ``start`` spans
    midnight."""

    days: tuple[int, ...] = Field(default=(0, 1, 2, 3, 4, 5, 6),
                                  description="weekdays, Monday = 0")
    start: str = Field(default="00:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(default="24:00", pattern=r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")


class Recipient(_Section):
    """A person or desk: receivers (channels) in order of preference, the next is the fallback."""

    name: str
    receivers: tuple[str, ...] = Field(min_length=1)
    fallback_after_s: float = Field(default=30.0, gt=0,
                                    description="next receiver when not delivered by then")
    devices: tuple[str, ...] = Field(default=(), description="only these devices' alerts "
                                     "(a resident's family); empty = all")
    buildings: tuple[str, ...] = Field(default=(), description="only alerts in these buildings "
                                       "(a building manager); empty = all")
    on_call: tuple[OnCallShift, ...] = Field(default=(), description="empty = always")


class RecipientGroup(_Section):
    """fire_station, duty_officers, building_managers, family_contacts, public_broadcast…"""

    name: str
    recipients: tuple[Recipient, ...] = Field(min_length=1)
    drill: bool = Field(default=False, description="takes part in drills: drill alerts go "
                        "only to such groups")


class EscalationStep(_Section):
    after_s: float = Field(default=0.0, ge=0, description="since the alert opened")
    groups: tuple[str, ...] = Field(min_length=1)
    min_severity: _Colour = "blue"


class EscalationPolicy(_Section):
    """Steps until someone acknowledges, then reminders; the first matching policy applies."""

    name: str
    site: str = "*"
    hazards: tuple[str, ...] = ("*",)
    kinds: tuple[Literal["hazard", "health", "anomaly"], ...] = ("hazard",)
    min_severity: _Colour = "blue"
    steps: tuple[EscalationStep, ...] = Field(min_length=1)
    remind_every_s: float = Field(default=300.0, gt=0)
    max_reminders: int = Field(default=3, ge=0, le=50)

    def matches(self, *, site: str, hazard: str, kind: str, severity: Severity) -> bool:
        return ((self.site in ("*", site)) and ("*" in self.hazards or hazard in self.hazards)
                and kind in self.kinds and severity >= Severity[self.min_severity.upper()])

    @model_validator(mode="after")
    def _steps_in_order(self) -> Self:
        delays = [s.after_s for s in self.steps]
        if delays != sorted(delays):
            raise ValueError("steps must be in order of after_s")
        return self


class ChannelLimit(_Section):
    channel: str
    per_minute: int = Field(default=600, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)
    max_in_flight: int = Field(default=8, ge=1, description="so a hanging channel cannot "
                               "take every sending slot")


class InhibitRule(_Section):
    """A live source alert mutes target alerts in the same building (or site)."""

    name: str
    source_hazards: tuple[str, ...] = Field(min_length=1)
    target_hazards: tuple[str, ...] = Field(min_length=1)
    scope: Literal["building", "site"] = "building"


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (
    InhibitRule(name="confirmed-fire", source_hazards=("fire",),
                target_hazards=("smoke", "heat", "overheat", "co")),
    InhibitRule(name="power-outage", source_hazards=("power_outage",),
                target_hazards=("offline",), scope="site"),
)


class AlertingSettings(_Section):
    receivers: tuple[Receiver, ...] = ()
    routes: tuple[Route, ...] = ()
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=60.0, gt=0)
    send_timeout_s: float = Field(default=10.0, gt=0)
    language: Literal["zh", "en"] = "zh"
    group: str = "alerting"
    groups: tuple[RecipientGroup, ...] = ()
    policies: tuple[EscalationPolicy, ...] = ()
    channels: tuple[ChannelLimit, ...] = ()
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    storm_threshold: int = Field(default=10, ge=2, description="more new alerts than this "
                                 "for one recipient at once: one summary message instead")
    timezone: str = "Asia/Shanghai"
    sender: str = Field(default="shouwang", description="CAP sender")
    sender_code: str = Field(default="", description="GB/T 35965.1 issuing-unit code, "
                             "when assigned")
    ack_link_base: str = Field(default="http://127.0.0.1:8080",
                               description="console base URL put in SMS acknowledgement links")
    ack_link_ttl_s: float = Field(default=3600.0, gt=0)
    ack_secret: SecretStr | None = Field(default=None, description="HMAC key of the "
                                         "acknowledgement links (SHOUWANG_ALERTING__ACK_SECRET); "
                                         "unset = no links")
    expire_after_s: float | None = Field(default=None, gt=0, description="an alert nobody "
                                         "acknowledged and nothing changed for this long "
                                         "expires (audited); unset = never")

    @model_validator(mode="after")
    def _routes_name_receivers(self) -> Self:
        names = {r.name for r in self.receivers}
        for index, route in enumerate(self.routes):
            missing = [n for n in route.receivers if n not in names]
            if missing:
                raise ValueError(f"routes[{index}] names unknown receivers {missing}")
        return self

    @model_validator(mode="after")
    def _policies_name_groups(self) -> Self:
        names = {r.name for r in self.receivers}
        for g_index, group in enumerate(self.groups):
            for r_index, recipient in enumerate(group.recipients):
                missing = [n for n in recipient.receivers if n not in names]
                if missing:
                    raise ValueError(f"groups[{g_index}].recipients[{r_index}] "
                                     f"({recipient.name}) names unknown receivers {missing}")
        group_names = {g.name for g in self.groups}
        for p_index, policy in enumerate(self.policies):
            for s_index, step in enumerate(policy.steps):
                missing = [n for n in step.groups if n not in group_names]
                if missing:
                    raise ValueError(f"policies[{p_index}].steps[{s_index}] names unknown "
                                     f"groups {missing}")
        return self


class ConsoleSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Login: cookies marked Secure when served over TLS (or always, behind a TLS proxy).
    secure_cookies: bool = False
    session_ttl_s: float = Field(default=12 * 3600, gt=0, description="one duty shift")
    login_attempts: int = Field(default=5, ge=1, description="failures per name and per "
                                "client address within login_window_s")
    login_window_s: float = Field(default=300, gt=0)


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
    except SettingsError as err:  # e.g. a SHOUWANG_* variable that should be JSON and is not
        raise ConfigError(f"invalid configuration: {err}") from err
