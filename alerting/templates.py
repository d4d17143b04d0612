"""Alert messages in words: a title, a one-segment SMS and a spoken broadcast, in zh or en.

The wording per hazard is one table per language; a new hazard is a new row. An SMS in
Chinese is sent as UCS-2, where one segment holds 70 characters: the text is fitted to
that by shortening the site name, then the place, never the hazard, value or advice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from alerting.models import AlertText, Language
from shouwang.models import Alert, Device, Location, Severity, Site

__all__ = [
    "HAZARD_WORDING",
    "SMS_LIMIT",
    "HazardWording",
    "body_for",
    "render",
    "render_title",
]

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


def _wording(hazard: str, language: Language) -> HazardWording:
    return HAZARD_WORDING[language].get(hazard, _FALLBACK[language])


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
    wording = _wording(alert.hazard, language)
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
    wording = _wording(alert.hazard, language)
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
    name = _wording(hazard, language).name
    drill_prefix = _DRILL[language] if drill else ""
    level = _SEVERITY[language][severity]
    if language == "zh":
        return f"{drill_prefix}【{level}】{site_name} {name}"
    return f"{drill_prefix}{level}: {name} at {site_name}"


def render(alert: Alert, *, site: Site | None = None, device: Device | None = None,
           language: Language = "zh") -> AlertText:
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
    return AlertText(
        title=render_title(hazard=alert.hazard, severity=alert.severity, site_name=site_name,
                           drill=alert.drill, language=language),
        sms=_sms(alert, site_name, _place(alert, device, language, spoken=False), language),
        broadcast=_broadcast(alert, site_name, _place(alert, device, language, spoken=True),
                             language),
    )


def body_for(channel: str, text: AlertText) -> str:
    """What a channel carries: loudspeakers speak the broadcast text, the rest get the SMS."""
    return text.broadcast if channel == "broadcast" else text.sms
