"""Settings for every service: one YAML file, overridden by ``SHOUWANG_*`` variables.

``load()`` is called once, in ``main()``; the typed, frozen object is passed down. A bad
file fails at startup with the key and the reason (``ConfigError``), before the first
message arrives. Secrets come from the environment (``SHOUWANG_MQTT__PASSWORD``,
``SHOUWANG_DATABASE__DSN``), never from the committed YAML.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
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

from shouwang.catalog import EVENTS, METRICS_BY_KEY, DeviceType
from shouwang.models import Device, Location, Severity, Site

__all__ = [
    "DEFAULT_CORRELATIONS",
    "DEFAULT_DRIFT_RULES",
    "DEFAULT_INHIBIT_RULES",
    "DEFAULT_RATE_OF_RISE",
    "DEFAULT_THRESHOLDS",
    "AlertingSettings",
    "AnomalySettings",
    "BroadcastSettings",
    "BusSettings",
    "ChannelLimit",
    "ConfigError",
    "ConsoleSettings",
    "CorrelationRule",
    "DatabaseSettings",
    "DetectorSettings",
    "DeviceConfig",
    "DriftRule",
    "DriftSettings",
    "DrillSettings",
    "EscalationPolicy",
    "EscalationStep",
    "FloodSettings",
    "ForecastSettings",
    "HealthSettings",
    "IngestSettings",
    "InhibitRule",
    "MetricsSettings",
    "MqttSettings",
    "OnCallShift",
    "PlanBuilding",
    "PlanFloor",
    "PrivacySettings",
    "RateOfRiseRule",
    "Receiver",
    "Recipient",
    "RecipientGroup",
    "ResidentConfig",
    "Route",
    "ScenarioRun",
    "Settings",
    "SimulatorSettings",
    "SinkSettings",
    "SiteConfig",
    "SitePlan",
    "ThresholdRule",
    "TrainingSettings",
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


class FloodSettings(_Section):
    """Per-device message limits: over them, rate_limited; sustained, quarantined.

    A device may send ``max(rate_factor / report_interval_s, min_rate_per_s)`` messages a
    second, with ``burst_messages`` in hand. 20x sits between the 10x burst the system
    must absorb and a 50x flood; the floor keeps replays and fast drills of slow devices
    flowing (below 2 messages/s one device cannot hurt a 60k/s ingest). The burst lets a
    backlog with densely packed timestamps through (a device's buffer after an outage,
    the test and benchmark streams: up to 1000 messages a device); a flood of 50 a second
    runs it out in 40 s.
    """

    enabled: bool = True
    rate_factor: float = Field(default=20.0, ge=1.0, description="times the nominal rate")
    min_rate_per_s: float = Field(default=2.0, gt=0)
    burst_messages: int = Field(default=2000, ge=1)
    quarantine_after_s: float = Field(default=60.0, gt=0, description="over the limit again "
                                      "and again this long, no quiet period between: quarantine")
    release_quiet_s: float = Field(default=300.0, gt=0, description="within the limit this "
                                   "long: released automatically")
    reject_sample_s: float = Field(default=10.0, gt=0, description="at most one rejects row "
                                   "per device and reason this often; it carries the count")
    sync_s: float = Field(default=2.0, gt=0, description="how often the quarantine table is "
                          "re-read (releases by `shouwang devices release`)")
    unregistered_rate_per_s: float = Field(default=100.0, gt=0, description="rejects from "
                                           "senders not in the registry, all together")
    unregistered_burst: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _quiet_covers_sampling(self) -> Self:
        if self.release_quiet_s < self.reject_sample_s:
            raise ValueError("release_quiet_s must be at least reject_sample_s")
        return self


class IngestSettings(_Section):
    batch_max_messages: int = Field(default=5000, ge=1)
    flush_ms: int = Field(default=50, ge=1, le=10_000)
    max_payload_bytes: int = Field(default=64 * 1024, ge=256)
    max_readings_per_message: int = Field(default=500, ge=1)
    flood: FloodSettings = FloodSettings()
    stale_after_s: float | None = Field(default=7 * 86400.0, gt=0, description="readings "
                                        "older than this on arrival are rejected as stale "
                                        "(replays); the broker keeps a session 7 days")


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
    # An hour at the usual 30 s report interval: longer than any cooking bump or shower
    # (15-40 min) the simulators and residents produce, so only a lasting change of
    # level (sensor swapped or moved, new appliance) is adopted.
    adopt_after: int = Field(default=120, ge=0, le=100_000,
                             description="readings in one episode after which its level "
                                         "is learnt as the new normal; 0 = never")
    # Not battery, rssi, steps or position: they drift or jump by design.
    metrics: tuple[str, ...] = ("lel", "co", "smoke", "temperature", "level",
                                "residual_current", "heart_rate")


class DriftRule(_Section):
    """A metric whose sensors are compared with their neighbours' (same type, room or
    building): a robust level further than ``tolerance`` from the group's median for
    ``persist_s`` is drift; it clears under ``clear``."""

    device_type: DeviceType
    metric: str
    tolerance: float = Field(gt=0, description="in the metric's unit")
    clear: float = Field(ge=0, description="in the metric's unit, below tolerance")
    source: str = Field(description="the standard or reasoning behind the numbers")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.clear >= self.tolerance:
            raise ValueError("clear must be below tolerance (hysteresis)")
        described = METRICS_BY_KEY.get(self.metric)
        if described is None or self.device_type not in described.device_types:
            raise ValueError(f"{self.device_type.value} devices do not report {self.metric!r}")
        return self


DEFAULT_DRIFT_RULES: tuple[DriftRule, ...] = (
    DriftRule(device_type=DeviceType.GAS, metric="lel", tolerance=5.0, clear=2.5,
              source="EN 60079-29-1 tests a detector's zero for long-term stability at "
                     "about ±5 %LEL; neighbours in clean air read 0-2 %LEL, so 5 %LEL off "
                     "them for hours (a fifth of level 1, GB/T 50493-2019) needs "
                     "recalibration"),
    DriftRule(device_type=DeviceType.GAS, metric="co", tolerance=10.0, clear=5.0,
              source="EN 50291-1 CO alarms must not alarm below 30 ppm; electrochemical "
                     "cells drift with age, and 10 ppm off the building's other kitchens "
                     "for hours (cooking bumps last under an hour) is a third of that "
                     "margin"),
    DriftRule(device_type=DeviceType.SMOKE, metric="temperature", tolerance=4.0, clear=2.0,
              source="rooms of one building differ by 1-3 °C (GB 50736-2012 indoor design "
                     "range); EN 54-5 class A1 heat detectors alarm from 54 °C, so a "
                     "thermistor 4 °C off its neighbours for hours shifts the heat alarm "
                     "and the rate-of-rise baseline"),
    DriftRule(device_type=DeviceType.WATER, metric="level", tolerance=0.10, clear=0.05,
              source="water-level gauges are specified to 1-3 cm (GB/T 11828.1); "
                     "neighbouring pits of one garage sit within centimetres when dry, so "
                     "10 cm off them for hours is a fouled or drifting probe"),
)


class DriftSettings(_Section):
    """Sensor drift against neighbouring sensors (HEALTH, ``<metric>_drift``).

    Drift is slow and lasting: the level is a Huber-clipped weighted mean with time
    constant ``tau_s`` (an hour forgets a cooking bump), judged every ``check_every_s``
    after ``warmup_s`` of history, and must stay out of tolerance for ``persist_s``
    (six hours: longer than any daily nuisance or incident). ``min_peers`` other
    sensors are needed: with fewer, a median cannot tell which one moved.
    """

    enabled: bool = True
    rules: tuple[DriftRule, ...] = DEFAULT_DRIFT_RULES
    tau_s: float = Field(default=3600.0, gt=0)
    warmup_s: float = Field(default=7200.0, ge=0)
    persist_s: float = Field(default=6 * 3600.0, gt=0)
    check_every_s: float = Field(default=300.0, gt=0)
    stale_s: float = Field(default=3600.0, gt=0,
                           description="a peer not heard from for longer is left out")
    min_peers: int = Field(default=2, ge=2, le=1000)


class TrainingSettings(_Section):
    """IsolationForest per device type, trained from the ``readings`` history.

    ``n_estimators`` 100 and ``max_samples`` 256 are Liu, Ting and Zhou's defaults
    (Isolation Forest, ICDM 2008: path lengths converge by 100 trees, 256 points per
    tree suffice). The alarm threshold is the ``quantile`` of the training rows' own
    scores, so it fits each type's spread; ``confirm`` flagged messages in a row open
    an episode and ``clear_after`` calm ones close it.
    """

    interval_s: float = Field(default=0.0, ge=0, description="the detect worker retrains "
                              "this often; 0 = only `shouwang train` (cron) trains")
    reload_s: float = Field(default=300.0, gt=0, description="the detect worker looks for "
                            "a newer model version this often")
    history_s: float = Field(default=7 * 86400.0, gt=0, description="readings this recent")
    max_rows: int = Field(default=200_000, ge=100, description="newest messages per type")
    min_rows: int = Field(default=500, ge=10, description="fewer = that type is not trained")
    n_estimators: int = Field(default=100, ge=10, le=1000)
    max_samples: int = Field(default=256, ge=16, le=4096)
    quantile: float = Field(default=0.9995, gt=0.5, lt=1)
    margin: float = Field(default=1.0, ge=0, description="interquartile ranges beyond the "
                          "training range that flag a message (a forest cannot rank "
                          "points outside its data)")
    confirm: int = Field(default=3, ge=1, le=100)
    clear_after: int = Field(default=10, ge=1, le=1000)
    utc_offset_h: float = Field(default=8.0, ge=-12, le=14,
                                description="local time of day is a feature (meals, sleep)")
    seed: int = 0
    alert_margin_s: float = Field(default=600.0, ge=0, le=86400, description="a device's "
                                  "readings from this long before a real hazard or health "
                                  "alert opened until it resolved are not learnt (a leak "
                                  "builds for minutes before it crosses an alarm level)")


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
    drift: DriftSettings = DriftSettings()
    training: TrainingSettings = TrainingSettings()


class Receiver(_Section):
    """A person or endpoint with one channel; ``urls`` are apprise URLs."""

    name: str
    channel: Literal["sms", "broadcast", "wecom", "dingtalk", "feishu", "email", "webhook"]
    urls: tuple[str, ...] = Field(min_length=1)
    drill: bool | None = Field(default=None, description="takes drill alerts from the plain "
                               "routes; unset = every channel but broadcast (drills never "
                               "reach public loudspeakers unless this says so). Set false "
                               "for residents' families.")

    @property
    def takes_drills(self) -> bool:
        return self.drill if self.drill is not None else self.channel != "broadcast"


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


class BroadcastSettings(_Section):
    """Community loudspeakers: the structured message and its spoken audio file."""

    site_wide_hazards: tuple[str, ...] = Field(
        default=("flood", "power_outage"), description="hazards announced in the whole site; "
        "the rest only in the alert's building (the whole site when it has none)")
    tts_command: str = Field(default="espeak-ng", description="local text-to-speech program "
                             "(espeak-ng command line); not installed or \"\" = text only")
    voice_zh: str = "cmn"
    voice_en: str = "en-us"
    audio_dir: Path | None = Field(default=None, description="deprecated, unused: the WAV "
                                   "clips are kept in the database; still accepted so older "
                                   "configurations load (a warning says it is ignored)")
    audio_url_base: str = Field(default="", description="public base URL of the clips put in "
                                "the message (the console serves /broadcast/audio/); "
                                "\"\" = the clip's name only")
    audio_keep: int = Field(default=50, ge=1, description="most recently used WAV clips "
                            "kept in the database, older ones deleted (a one-minute "
                            "Chinese warning is ~2.4 MB)")
    tts_timeout_s: float = Field(default=10.0, gt=0)


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
                                         "acknowledged and no detection repeated for this "
                                         "long expires (audited); unset = never")
    storm_window_s: float = Field(default=30.0, ge=0, description="per receiver: once more "
                                  "than storm_threshold alerts reached it within this window, "
                                  "later ones wait for its end and go as one summary; "
                                  "0 = per batch only")
    anomaly_alerts: bool = Field(default=True, description="learned-anomaly detections open "
                                 "alerts (kind anomaly) on the console; routed only by "
                                 "routes/policies naming kinds: [anomaly]")
    anomaly_max_severity: _Colour = "blue"
    broadcast: BroadcastSettings = BroadcastSettings()

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
    login_attempts: int = Field(default=5, ge=1, description="failures per client address, "
                                "and per name from one address, within login_window_s")
    login_attempts_per_name: int = Field(
        default=50, ge=1, description="failures per name from all addresses together within "
        "login_window_s: guessing spread over many addresses (one address is stopped at "
        "login_attempts first, so it cannot lock the name's owner out)")
    login_window_s: float = Field(default=300, gt=0)
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = Field(
        default=(), description="reverse proxies (addresses or networks) whose "
        "X-Forwarded-For names the real client, for the login limit and the audit trail; "
        "empty = the connecting address is the client")


class SinkSettings(_Section):
    """The local stand-in for the far end (SMS provider, broadcast controller)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)


class ScenarioRun(_Section):
    scenario: str
    device_id: str
    start_after_s: float = Field(default=60.0, ge=0)


class DrillSettings(_Section):
    """What becomes of a drill's data (readings, alerts, their history and messages) once
    the drill is over (the scorecard is always kept), and how a drill whose player died is
    noticed (simulators/drill_watch.py)."""

    keep: bool = Field(default=True, description="false = delete drill data purge_after_s "
                                                 "after the drill finished")
    purge_after_s: float = Field(default=3600.0, ge=0)
    heartbeat_s: float = Field(default=5.0, gt=0, description="a playing drill's player "
                               "says it is alive this often")
    stale_after_s: float = Field(default=60.0, gt=0, description="a running drill silent "
                                 "this long has lost its player and is abandoned; hosts' "
                                 "clocks must agree to well within it")
    sweep_s: float = Field(default=30.0, gt=0, description="how often each console looks "
                           "for such drills")

    @model_validator(mode="after")
    def _stale_after_several_beats(self) -> Self:
        # A slow database delays a beat or two; that must not end a drill that still plays.
        if self.stale_after_s < 3 * self.heartbeat_s:
            raise ValueError("drills.stale_after_s must be at least 3 heartbeat_s")
        return self


class SimulatorSettings(_Section):
    enabled: bool = True
    seed: int = 7
    speed: float = Field(default=1.0, gt=0, description="1.0 = real time")
    scenarios: tuple[ScenarioRun, ...] = ()


class PlanFloor(_Section):
    """One floor of a planned building; ``name`` is what devices say (``floor: "3"``, "B1")."""

    name: str = Field(min_length=1, max_length=32)
    rooms: tuple[str, ...] = Field(default=(), description="drawn side by side, west to "
                                   "east; a device whose room starts with one sits in it")

    @model_validator(mode="after")
    def _rooms_once(self) -> Self:
        if len(set(self.rooms)) != len(self.rooms):
            raise ValueError(f"floor {self.name!r} lists a room twice")
        return self


class PlanBuilding(_Section):
    """A building's outline on the site plan's canvas (a rectangle, canvas units), and its
    floors from the lowest up (drawn as bands, the top floor at the top)."""

    name: str = Field(min_length=1, max_length=64, description="as in devices' building")
    label: str = Field(default="", description="shown instead of the name when set")
    x: float = Field(ge=0)
    y: float = Field(ge=0)
    width: float = Field(gt=0)
    height: float = Field(gt=0)
    floors: tuple[PlanFloor, ...] = Field(default=(), description="empty: the floors "
                                          "its devices name")

    @model_validator(mode="after")
    def _floors_once(self) -> Self:
        names = [f.name for f in self.floors]
        if len(set(names)) != len(names):
            raise ValueError(f"building {self.name!r} lists a floor twice")
        return self


class SitePlan(_Section):
    """The site plan drawn in the console: buildings placed on an SVG canvas (no map
    tiles: community networks are often offline)."""

    width: float = Field(default=1000.0, gt=0, le=10_000)
    height: float = Field(default=600.0, gt=0, le=10_000)
    buildings: tuple[PlanBuilding, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _buildings_fit(self) -> Self:
        seen: set[str] = set()
        for index, b in enumerate(self.buildings):
            where = f"buildings[{index}] ({b.name})"
            if b.name in seen:
                raise ValueError(f"{where}: duplicate building name")
            seen.add(b.name)
            if b.x + b.width > self.width or b.y + b.height > self.height:
                raise ValueError(f"{where} reaches outside the {self.width:g}x"
                                 f"{self.height:g} canvas")
            for other in self.buildings[:index]:
                if (b.x < other.x + other.width and other.x < b.x + b.width
                        and b.y < other.y + other.height and other.y < b.y + b.height):
                    raise ValueError(f"{where} overlaps building {other.name!r}")
        return self


class SiteConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str
    address: str = ""
    plan: SitePlan | None = Field(default=None, description="the console's site plan; "
                                  "unset: drawn from the devices' buildings and floors")

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


_ConsoleRole = Literal["admin", "duty_officer", "fire_station", "viewer", "care"]


class PrivacySettings(_Section):
    """Residents' wearable data is personal health data: who may see it, how long it is kept.

    30 days: long enough to look back over a month of a resident's heart rate after an
    incident or a care review, short enough that the system is not a health record
    (data minimisation, PIPL Art. 19 / GDPR Art. 5(1)(e): keep no longer than needed).
    """

    health_retention_days: int = Field(default=30, ge=1, le=3650, description="wearable "
                                       "health readings older than this are deleted")
    # What a wearable reports about its wearer (not battery, rssi, online: the device's own).
    health_metrics: tuple[str, ...] = ("heart_rate", "spo2", "steps", "lat", "lon", "fall",
                                       "sos")
    health_roles: tuple[_ConsoleRole, ...] = Field(
        default=("admin", "duty_officer", "care"), description="console roles that see "
        "health values and series; others see only that a wearable alert exists, and where")
    purge_interval_s: float = Field(default=3600.0, gt=0, description="how often the "
                                    "running system deletes expired health readings")
    purge_batch: int = Field(default=5000, ge=1, le=1_000_000,
                             description="rows per DELETE, so a purge never holds long locks")

    @model_validator(mode="after")
    def _known_metrics(self) -> Self:
        unknown = [m for m in self.health_metrics if m not in METRICS_BY_KEY and m not in EVENTS]
        if unknown:
            raise ValueError(f"health_metrics names unknown metrics or events {unknown}")
        return self


class ResidentConfig(_Section):
    """A resident who wears one or more wearables; ``family_contacts`` name recipients in
    ``alerting.groups``. Personal data: exported and deleted with ``shouwang residents``."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    name: str
    site: str
    building: str = ""
    unit: str = ""
    floor: str = ""
    room: str = ""
    devices: tuple[str, ...] = Field(min_length=1, description="the resident's wearables")
    family_contacts: tuple[str, ...] = Field(default=(), description="recipient names in "
                                             "alerting.groups")


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
    drills: DrillSettings = DrillSettings()
    sites: tuple[SiteConfig, ...] = ()
    devices: tuple[DeviceConfig, ...] = ()
    privacy: PrivacySettings = PrivacySettings()
    residents: tuple[ResidentConfig, ...] = ()

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

    @model_validator(mode="after")
    def _check_residents(self) -> Self:
        site_ids = {s.id for s in self.sites}
        wearables = {d.id: d.site for d in self.devices if d.type is DeviceType.WEARABLE}
        recipients = {r.name for g in self.alerting.groups for r in g.recipients}
        owner: dict[str, str] = {}
        ids: set[str] = set()
        for index, resident in enumerate(self.residents):
            where = f"residents[{index}] ({resident.id})"
            if resident.id in ids:
                raise ValueError(f"{where}: duplicate resident id")
            ids.add(resident.id)
            if resident.site not in site_ids:
                raise ValueError(f"{where} names unknown site {resident.site!r}")
            for device_id in resident.devices:
                if wearables.get(device_id) != resident.site:
                    raise ValueError(f"{where}: {device_id!r} is not a wearable of site "
                                     f"{resident.site!r}")
                if device_id in owner:
                    raise ValueError(f"{where}: {device_id!r} is worn by {owner[device_id]!r} "
                                     "already")
                owner[device_id] = resident.id
            missing = [n for n in resident.family_contacts if n not in recipients]
            if missing:
                raise ValueError(f"{where} names unknown family contacts {missing} "
                                 "(recipients in alerting.groups)")
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
