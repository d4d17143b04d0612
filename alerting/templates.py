"""Alert messages in words: a title, a one-segment SMS, a spoken broadcast and a long
form (email, chat apps, webhooks), in zh or en.

The wording per hazard is one table per language; a new hazard is a new row; a learned
anomaly (``{metric}_anomaly``) is named after its metric. An SMS in Chinese is sent as
UCS-2, where one segment holds 70 characters: the text is fitted to that by shortening
the site name, then the place, never the hazard, value or advice. Each channel gets its
own form (``FORMS``), also when it stands in for another as a fallback.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from alerting.models import AlertText, Language
from shouwang.catalog import METRICS_BY_KEY
from shouwang.models import Alert, Device, Location, Severity, Site

__all__ = [
    "FORMS",
    "HAZARD_WORDING",
    "SMS_LIMIT",
    "Form",
    "HazardWording",
    "body_for",
    "form_of",
    "hazard_wording",
    "render",
    "render_title",
]

Form = Literal["sms", "broadcast", "long"]
# Which text each channel carries; a channel not listed gets the SMS.
FORMS: Mapping[str, Form] = {"sms": "sms", "broadcast": "broadcast", "email": "long",
                             "wecom": "long", "dingtalk": "long", "feishu": "long",
                             "webhook": "long"}
_ANOMALY_SUFFIX = "_anomaly"  # the learned detectors' hazard names: "{metric}_anomaly"
_DRIFT_SUFFIX = "_drift"  # drift against neighbours: "{metric}_drift"
_FORECAST_SUFFIX = "_forecast"  # the early warning before a hazard: "{hazard}_forecast"

# One SMS segment: 70 UCS-2 characters (Chinese), 160 GSM-7 characters (English).
SMS_LIMIT: Mapping[Language, int] = {"zh": 70, "en": 160}
_SITE_SHORT = 6  # characters of the site name kept when the SMS is too long


@dataclass(frozen=True, slots=True, kw_only=True)
class HazardWording:
    name: str
    advice: str            # imperative, short enough for the SMS
    spoken_advice: str     # the same, said in full over a loudspeaker
    value: str = ""        # how the value reads in the SMS, "{v}" = the number; "" = not shown
    spoken_value: str = ""


_ZH: Mapping[str, HazardWording] = {
    "gas": HazardWording(
        name="燃气泄漏", advice="请立即关阀开窗勿动电器", value="{v}%LEL",
        spoken_value="可燃气体浓度达到爆炸下限的百分之{v}",
        spoken_advice="请立即关闭燃气阀门，打开门窗通风，不要开关任何电器，不要使用明火，"
                      "并迅速撤离到室外"),
    "co": HazardWording(
        name="一氧化碳超标", advice="请立即开窗通风撤离到室外", value="{v}ppm",
        spoken_value="一氧化碳浓度{v}ppm",
        spoken_advice="请立即打开门窗通风，熄灭炉火，迅速撤离到空气新鲜的地方"),
    "smoke": HazardWording(
        name="烟雾报警", advice="请立即确认火情必要时拨打119",
        spoken_advice="请立即确认是否发生火灾，如有火情请拨打119，用湿毛巾捂住口鼻，"
                      "沿安全通道撤离，不要乘坐电梯"),
    "heat": HazardWording(
        name="温度异常疑似火情", advice="请立即确认火情必要时拨打119", value="{v}°C",
        spoken_value="现场温度{v}摄氏度",
        spoken_advice="请立即确认是否发生火灾，如有火情请拨打119，沿安全通道撤离，"
                      "不要乘坐电梯"),
    "flood": HazardWording(
        name="水位超限", advice="请远离低洼处并转移车辆物资", value="水位{v}m",
        spoken_value="水位已达{v}米",
        spoken_advice="请远离地下车库和低洼区域，尽快将车辆和物资转移到高处，注意用电安全"),
    "electrical_leak": HazardWording(
        name="电气漏电", advice="请断开电源勿触碰设备", value="{v}mA",
        spoken_value="剩余电流{v}毫安",
        spoken_advice="请立即断开电源，不要触碰相关设备和线路，并通知电工检修"),
    "overheat": HazardWording(
        name="线路过热", advice="请断电检查线路防止起火", value="{v}°C",
        spoken_value="线路温度{v}摄氏度",
        spoken_advice="请立即断开该回路电源，检查线路和接头，防止引发火灾"),
    "heart_rate_high": HazardWording(
        name="心率过高", advice="请立即联系老人确认状况", value="{v}次/分",
        spoken_value="心率每分钟{v}次",
        spoken_advice="请立即联系老人或上门查看，必要时拨打120"),
    "heart_rate_low": HazardWording(
        name="心率过低", advice="请立即联系老人必要时拨打120", value="{v}次/分",
        spoken_value="心率每分钟{v}次",
        spoken_advice="请立即联系老人或上门查看，必要时拨打120"),
    "sos": HazardWording(
        name="紧急呼救", advice="请立即回电或上门查看",
        spoken_advice="请立即回电或上门查看，必要时拨打120或110"),
    "fall": HazardWording(
        name="跌倒报警", advice="请立即上门查看必要时拨打120",
        spoken_advice="请立即上门查看老人情况，不要随意搬动伤者，必要时拨打120"),
    "offline": HazardWording(
        name="设备离线", advice="请检查设备电源和网络",
        spoken_advice="请检查设备的电源和网络连接"),
    # Correlation results and early signs (detectors.correlations, rate_of_rise).
    "fire": HazardWording(
        name="火灾", advice="请立即疏散并拨打119",
        spoken_advice="请立即用湿毛巾捂住口鼻，沿安全通道疏散，不要乘坐电梯，并拨打119报警"),
    "gas_spread": HazardWording(
        name="多处燃气泄漏", advice="请关阀开窗勿动电器并疏散",
        spoken_advice="同一楼栋多处燃气报警，请立即关闭燃气阀门，打开门窗，不要开关任何电器，"
                      "不要使用明火，迅速撤离到室外"),
    "heat_rise": HazardWording(
        name="温度快速上升疑似火情", advice="请立即到场确认火情",
        spoken_advice="请值班人员立即到场确认是否发生火灾，如有火情请拨打119"),
    "overheat_rise": HazardWording(
        name="线路温度快速上升", advice="请立即检查配电箱必要时断电",
        spoken_advice="请电工立即检查配电箱和线路，必要时断开电源，防止引发火灾"),
    "siren": HazardWording(name="报警器鸣响", advice="请尽快到场查看",
                           spoken_advice="请值班人员尽快到场查看"),
    "power_outage": HazardWording(
        name="楼栋停电或断网", advice="请检查楼栋供电和网关",
        spoken_advice="请维护人员检查楼栋供电和网络网关"),
    # Sensor health: maintenance, not emergency; the advice says what to fix.
    "stuck": HazardWording(name="读数不变", advice="请检查传感器是否失效",
                           spoken_advice="请维护人员检查传感器是否失效"),
    "out_of_range": HazardWording(name="读数超出量程", advice="请检查或更换传感器",
                                  spoken_advice="请维护人员检查或更换传感器"),
    "battery_low": HazardWording(name="电池电量低", advice="请尽快更换电池",
                                 spoken_advice="请维护人员尽快更换设备电池"),
    "seq_gap": HazardWording(name="数据丢失", advice="请检查设备网络信号",
                             spoken_advice="请维护人员检查设备的网络信号"),
    "seq_duplicate": HazardWording(name="数据重复", advice="请检查设备或网关",
                                   spoken_advice="请维护人员检查设备或网关"),
    "clock_skew": HazardWording(name="设备时钟偏差", advice="请校准设备时间",
                                spoken_advice="请维护人员校准设备时间"),
    "tamper": HazardWording(name="设备被拆动", advice="请到场检查设备",
                            spoken_advice="请维护人员到场检查设备是否被拆动"),
    "flooding": HazardWording(name="设备发送过频已隔离", advice="请检查设备固件或网关",
                              spoken_advice="请维护人员检查设备固件或网关"),
    "pattern_anomaly": HazardWording(name="读数组合异常", advice="请在值班台查看",
                                     spoken_advice="请值班人员查看设备读数"),
}

# Plain ASCII units ("degC"): a character outside GSM-7, such as "°", makes the whole SMS UCS-2.
_EN: Mapping[str, HazardWording] = {
    "gas": HazardWording(
        name="Gas leak", advice="Shut the gas valve, open windows, touch no switches, get out.",
        value="{v}%LEL", spoken_value="Gas concentration is {v} percent of the explosive limit",
        spoken_advice="Shut the gas valve, open doors and windows, do not touch any electrical "
                      "switch or naked flame, and leave the building now"),
    "co": HazardWording(
        name="Carbon monoxide", advice="Open windows and get out to fresh air now.",
        value="{v}ppm", spoken_value="Carbon monoxide is {v} parts per million",
        spoken_advice="Open doors and windows, put out any stove, and get to fresh air now"),
    "smoke": HazardWording(
        name="Smoke alarm", advice="Check for fire; call 119 if needed.",
        spoken_advice="Check for fire. If there is a fire, call 119, cover your nose and mouth, "
                      "and leave by the stairs, not the lift"),
    "heat": HazardWording(
        name="Heat alarm, possible fire", advice="Check for fire; call 119 if needed.",
        value="{v} degC", spoken_value="The temperature is {v} degrees Celsius",
        spoken_advice="Check for fire. If there is a fire, call 119 and leave by the stairs, "
                      "not the lift"),
    "flood": HazardWording(
        name="Flooding", advice="Keep out of low areas; move cars and goods up.",
        value="level {v}m", spoken_value="The water level is {v} metres",
        spoken_advice="Keep out of the underground garage and low areas, move cars and goods "
                      "to higher ground, and mind electrical safety"),
    "electrical_leak": HazardWording(
        name="Electrical leakage", advice="Switch off the power; do not touch the equipment.",
        value="{v}mA", spoken_value="The residual current is {v} milliamps",
        spoken_advice="Switch off the power, do not touch the equipment or wiring, and call "
                      "an electrician"),
    "overheat": HazardWording(
        name="Cable overheating", advice="Switch off the circuit and have it checked.",
        value="{v} degC", spoken_value="The cable temperature is {v} degrees Celsius",
        spoken_advice="Switch off the circuit and have the wiring and terminals checked "
                      "before it starts a fire"),
    "heart_rate_high": HazardWording(
        name="High heart rate", advice="Contact the resident now.", value="{v} bpm",
        spoken_value="The heart rate is {v} beats per minute",
        spoken_advice="Contact the resident or go and see them now; call 120 if needed"),
    "heart_rate_low": HazardWording(
        name="Low heart rate", advice="Contact the resident now; call 120 if needed.",
        value="{v} bpm", spoken_value="The heart rate is {v} beats per minute",
        spoken_advice="Contact the resident or go and see them now; call 120 if needed"),
    "sos": HazardWording(
        name="SOS call", advice="Call back or go to the resident now.",
        spoken_advice="Call the resident back or go and see them now; call 120 or 110 if "
                      "needed"),
    "fall": HazardWording(
        name="Fall detected", advice="Check on the resident now; call 120 if needed.",
        spoken_advice="Go and check on the resident now, do not move them if injured, and "
                      "call 120 if needed"),
    "offline": HazardWording(
        name="Device offline", advice="Check the device's power and network.",
        spoken_advice="Check the device's power supply and network connection"),
    "fire": HazardWording(
        name="Fire", advice="Leave the building now and call 119.",
        spoken_advice="Cover your nose and mouth, leave by the stairs, not the lift, and call "
                      "119"),
    "gas_spread": HazardWording(
        name="Gas leak in several flats",
        advice="Shut gas valves, open windows, touch no switches, get out.",
        spoken_advice="Several gas alarms in this building. Shut the gas valve, open doors and "
                      "windows, do not touch any electrical switch or naked flame, and leave "
                      "the building now"),
    "heat_rise": HazardWording(
        name="Temperature rising fast, possible fire", advice="Check for fire on site now.",
        spoken_advice="Duty staff, check for fire on site now. If there is a fire, call 119"),
    "overheat_rise": HazardWording(
        name="Cable temperature rising fast",
        advice="Check the distribution box; cut power if needed.",
        spoken_advice="Electrician, check the distribution box and wiring now and cut the "
                      "power if needed"),
    "siren": HazardWording(name="Siren sounding", advice="Please check on site soon.",
                           spoken_advice="Duty staff, please check on site soon"),
    "power_outage": HazardWording(
        name="Building power or network down", advice="Check the building's power and gateway.",
        spoken_advice="Maintenance, please check the building's power supply and network "
                      "gateway"),
    "stuck": HazardWording(name="Reading stuck", advice="Check whether the sensor failed.",
                           spoken_advice="Maintenance, please check whether the sensor failed"),
    "out_of_range": HazardWording(name="Reading out of range",
                                  advice="Check or replace the sensor.",
                                  spoken_advice="Maintenance, please check or replace the sensor"),
    "battery_low": HazardWording(name="Battery low", advice="Replace the battery soon.",
                                 spoken_advice="Maintenance, please replace the battery soon"),
    "seq_gap": HazardWording(name="Messages lost", advice="Check the device's signal.",
                             spoken_advice="Maintenance, please check the device's signal"),
    "seq_duplicate": HazardWording(name="Messages repeated",
                                   advice="Check the device or gateway.",
                                   spoken_advice="Maintenance, please check the device or "
                                                 "gateway"),
    "clock_skew": HazardWording(name="Device clock wrong", advice="Set the device's clock.",
                                spoken_advice="Maintenance, please set the device's clock"),
    "tamper": HazardWording(name="Device tampered with", advice="Check the device on site.",
                            spoken_advice="Maintenance, please check the device on site"),
    "flooding": HazardWording(name="Device flooding, quarantined",
                              advice="Check its firmware or gateway.",
                              spoken_advice="Maintenance, please check the device's firmware "
                                            "or gateway"),
    "pattern_anomaly": HazardWording(name="Unusual combination of readings",
                                     advice="See the console.",
                                     spoken_advice="Duty staff, please check the device "
                                                   "readings"),
}

HAZARD_WORDING: Mapping[Language, Mapping[str, HazardWording]] = {"zh": _ZH, "en": _EN}

# A hazard without a row (a new detector's) still reads sensibly.
_FALLBACK: Mapping[Language, HazardWording] = {
    "zh": HazardWording(name="设备告警", advice="请尽快到场查看",
                        spoken_advice="请值班人员尽快到场查看"),
    "en": HazardWording(name="Device alert", advice="Please check on site soon.",
                        spoken_advice="Duty staff, please check on site soon"),
}

_SEVERITY: Mapping[Language, Mapping[Severity, str]] = {
    "zh": {Severity.BLUE: "蓝色预警", Severity.YELLOW: "黄色预警",
           Severity.ORANGE: "橙色预警", Severity.RED: "红色预警"},
    "en": {Severity.BLUE: "Blue warning", Severity.YELLOW: "Yellow warning",
           Severity.ORANGE: "Orange warning", Severity.RED: "Red warning"},
}
_DRILL: Mapping[Language, str] = {"zh": "【演练】", "en": "[DRILL] "}
_BRAND: Mapping[Language, str] = {"zh": "【守望】", "en": "[Shouwang] "}


def hazard_wording(hazard: str, language: Language) -> HazardWording:
    """How a hazard reads in every message (SMS, broadcast, CAP, summaries); unknown
    hazards get the generic wording.

    >>> hazard_wording("lel_anomaly", "zh").name, hazard_wording("co_anomaly", "en").name
    ('可燃气体浓度读数异常', 'Unusual carbon monoxide readings')
    >>> hazard_wording("lel_drift", "zh").name
    '可燃气体浓度传感器漂移'
    """
    found = HAZARD_WORDING[language].get(hazard)
    if found is not None:
        return found
    metric = METRICS_BY_KEY.get(hazard.removesuffix(_ANOMALY_SUFFIX))
    if hazard.endswith(_ANOMALY_SUFFIX) and metric is not None:
        if language == "zh":
            return HazardWording(name=f"{metric.label_zh}读数异常", advice="请在值班台查看",
                                 spoken_advice="请值班人员查看设备读数")
        return HazardWording(name=f"Unusual {metric.label_en} readings",
                             advice="See the console.",
                             spoken_advice="Duty staff, please check the device readings")
    base = HAZARD_WORDING[language].get(hazard.removesuffix(_FORECAST_SUFFIX))
    if hazard.endswith(_FORECAST_SUFFIX) and base is not None:
        # A pre-warning: the hazard's own value, and "rising, check now" instead of
        # the evacuation advice the alarm itself carries.
        if language == "zh":
            return HazardWording(name=f"{base.name}趋势预警", advice="读数持续上升请尽快排查",
                                 spoken_advice="读数持续上升，即将达到报警值，请尽快到场排查",
                                 value=base.value, spoken_value=base.spoken_value)
        return HazardWording(name=f"{base.name} warning: rising",
                             advice="Readings keep rising; check it now.",
                             spoken_advice="Readings keep rising towards the alarm level; "
                                           "please check on site now",
                             value=base.value, spoken_value=base.spoken_value)
    metric = METRICS_BY_KEY.get(hazard.removesuffix(_DRIFT_SUFFIX))
    if hazard.endswith(_DRIFT_SUFFIX) and metric is not None:
        if language == "zh":
            return HazardWording(name=f"{metric.label_zh}传感器漂移", advice="请安排校准",
                                 spoken_advice="请维护人员校准该传感器")
        return HazardWording(name=f"{metric.label_en} sensor drifting",
                             advice="Arrange a calibration.",
                             spoken_advice="Maintenance, please calibrate this sensor")
    return _FALLBACK[language]


def _number(value: float) -> str:
    """Short and stable: ``32``, ``32.5``, ``0.45``.

    >>> [_number(v) for v in (32.0, 32.46, 0.454, 158.0, -3.0, 2_500_000.0)]
    ['32', '32.5', '0.45', '158', '-3', '2500000']
    """
    rounded = round(value, 1 if abs(value) >= 10 else 2)
    return f"{rounded:.2f}".rstrip("0").rstrip(".")


def _suffixed(part: str, suffix: str) -> str:
    # Config may say "3" or "3号楼"; only a bare number gets the unit word.
    return f"{part}{suffix}" if part.isascii() and part.isalnum() else part


def _place_zh(location: Location, *, spoken: bool) -> str:
    """``3号楼2单元502``; spoken adds the floor and 室.

    >>> loc = Location(building="3", unit="2单元", floor="5", room="502")
    >>> _place_zh(loc, spoken=False), _place_zh(loc, spoken=True)
    ('3号楼2单元502', '3号楼2单元5层502室')
    """
    parts = [_suffixed(location.building, "号楼") if location.building else "",
             _suffixed(location.unit, "单元") if location.unit else ""]
    # The room number already says the floor; the SMS has no room for both.
    if location.floor and (spoken or not location.room):
        parts.append(_suffixed(location.floor, "层"))
    if location.room:
        parts.append(_suffixed(location.room, "室") if spoken else location.room)
    return "".join(parts)


def _place_en(location: Location) -> str:
    """
    >>> _place_en(Location(building="3", unit="2", floor="5", room="502"))
    'Bldg 3, Unit 2, Floor 5, Room 502'
    """
    labelled = (("Bldg", location.building), ("Unit", location.unit),
                ("Floor", location.floor), ("Room", location.room))
    return ", ".join(f"{label} {part}" if part.isascii() else part
                     for label, part in labelled if part)


def _place(alert: Alert, device: Device | None, language: Language, *, spoken: bool) -> str:
    place = (_place_zh(alert.location, spoken=spoken) if language == "zh"
             else _place_en(alert.location))
    if place:
        return place
    return (device.name if device is not None and device.name else "") or alert.device_id


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fit_left(text: str, limit: int) -> str:
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1:]


def _sms(alert: Alert, site_name: str, place: str, language: Language) -> str:
    wording = hazard_wording(alert.hazard, language)
    value = (wording.value.format(v=_number(alert.last_value))
             if wording.value and alert.last_value is not None else "")
    head = (_DRILL[language] if alert.drill else "") + _BRAND[language]
    if language == "zh":
        tail = " ".join(p for p in (wording.name, value, wording.advice) if p)
        joiner = " "
    else:
        tail = f"{wording.name}{' ' + value if value else ''}. {wording.advice}"
        joiner = ": "
    limit = SMS_LIMIT[language]
    separator = "" if language == "zh" else ", "

    def compose(site: str, where: str) -> str:
        return head + separator.join(p for p in (site, where) if p) + joiner + tail

    text = compose(site_name, place)
    if len(text) <= limit:
        return text
    # Too long: the place matters more to a responder than the full site name.
    site = _fit(site_name, _SITE_SHORT) if len(site_name) > _SITE_SHORT else site_name
    room_for_place = limit - len(compose(site, "")) - (len(separator) if site else 0)
    # Cut the place from the left: the room number at its end is what a responder needs.
    where = _fit_left(place, room_for_place) if room_for_place > 1 else ""
    return _fit(compose(site, where), limit)


def _broadcast(alert: Alert, site_name: str, place: str, language: Language) -> str:
    wording = hazard_wording(alert.hazard, language)
    spoken_value = (wording.spoken_value.format(v=_number(alert.last_value))
                    if wording.spoken_value and alert.last_value is not None else "")
    drill = _DRILL[language] if alert.drill else ""
    if language == "zh":
        where = f"{site_name}{place}"
        value = f"{spoken_value}。" if spoken_value else ""
        return (f"{drill}紧急通知：{where}发生{wording.name}。{value}{wording.spoken_advice}。"
                f"重复一遍：{where}发生{wording.name}，{wording.spoken_advice}。")
    where = ", ".join(p for p in (site_name, place) if p)
    value = f"{spoken_value}. " if spoken_value else ""
    return (f"{drill}Attention please. {wording.name} at {where}. {value}"
            f"{wording.spoken_advice}. I repeat: {wording.name} at {where}. "
            f"{wording.spoken_advice}.")


def render_title(*, hazard: str, severity: Severity, site_name: str, drill: bool,
                 language: Language = "zh") -> str:
    """The headline of an alert; made from the alert row alone, so the sender can rebuild it.

    >>> render_title(hazard="gas", severity=Severity.RED, site_name="阳光小区", drill=True)
    '【演练】【红色预警】阳光小区 燃气泄漏'
    >>> render_title(hazard="gas", severity=Severity.RED, site_name="Sunshine", drill=False,
    ...              language="en")
    'Red warning: Gas leak at Sunshine'
    """
    name = hazard_wording(hazard, language).name
    drill_prefix = _DRILL[language] if drill else ""
    level = _SEVERITY[language][severity]
    if language == "zh":
        return f"{drill_prefix}【{level}】{site_name} {name}"
    return f"{drill_prefix}{level}: {name} at {site_name}"


_LONG_LABELS: Mapping[Language, tuple[str, ...]] = {
    "zh": ("地点", "设备", "读数", "发生时间", "处置建议", "告警编号"),
    "en": ("Place", "Device", "Reading", "Since", "What to do", "Alert"),
}


def _long(alert: Alert, title: str, site_name: str, place: str, device: Device | None,
          language: Language, zone: ZoneInfo) -> str:
    wording = hazard_wording(alert.hazard, language)
    spoken_value = (wording.spoken_value.format(v=_number(alert.last_value))
                    if wording.spoken_value and alert.last_value is not None else "")
    since = dt.datetime.fromtimestamp(alert.opened_at, zone).strftime("%Y-%m-%d %H:%M:%S %Z")
    device_name = f"{device.name} ({alert.device_id})" if device and device.name else (
        alert.device_id)
    where = f"{site_name}{place}" if language == "zh" else ", ".join(
        p for p in (site_name, place) if p)
    labels = _LONG_LABELS[language]
    colon = "：" if language == "zh" else ": "
    values = (where, device_name, spoken_value or alert.message, since,
              wording.spoken_advice, str(alert.id))
    lines = [title] + [f"{label}{colon}{value}" for label, value in zip(labels, values,
                                                                          strict=True) if value]
    return "\n".join(lines)


def render(alert: Alert, *, site: Site | None = None, device: Device | None = None,
           language: Language = "zh", timezone: str = "Asia/Shanghai") -> AlertText:
    """Title, SMS and broadcast text for ``alert``; ``site`` and ``device`` add names.

    >>> from shouwang.models import AlertStatus, DetectionKind
    >>> alert = Alert(id=1, site="s1", device_id="g1", hazard="gas", kind=DetectionKind.HAZARD,
    ...               severity=Severity.RED, status=AlertStatus.OPEN, opened_at=0.0,
    ...               location=Location(building="3", unit="2", floor="5", room="502"),
    ...               last_value=32.0)
    >>> render(alert, site=Site(id="s1", name="阳光小区")).sms
    '【守望】阳光小区3号楼2单元502 燃气泄漏 32%LEL 请立即关阀开窗勿动电器'
    """
    site_name = site.name if site is not None else alert.site
    title = render_title(hazard=alert.hazard, severity=alert.severity, site_name=site_name,
                         drill=alert.drill, language=language)
    spoken_place = _place(alert, device, language, spoken=True)
    return AlertText(
        title=title,
        sms=_sms(alert, site_name, _place(alert, device, language, spoken=False), language),
        broadcast=_broadcast(alert, site_name, spoken_place, language),
        long=_long(alert, title, site_name, spoken_place, device, language,
                   ZoneInfo(timezone)),
    )


def form_of(channel: str) -> Form:
    return FORMS.get(channel, "sms")


def body_for(channel: str, text: AlertText) -> str:
    """The text ``channel`` carries: the SMS, the spoken broadcast or the long form."""
    form = form_of(channel)
    return text.broadcast if form == "broadcast" else text.long if form == "long" else text.sms
