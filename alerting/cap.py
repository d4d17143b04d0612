"""Public-facing alerts as CAP 1.2 messages (OASIS Common Alerting Protocol) and a feed.

Each hazard alert is a series of CAP messages: ``Alert`` when it opened, ``Update`` for
each later change of state (escalated, acknowledged, suppressed), ``Cancel`` when it
was resolved or expired; each Update and Cancel ``references`` every message before
it. Drills are ``Exercise``, everything else ``Actual``. The four colours map to CAP
severity and urgency through ``alerting.levels``; certainty is ``Observed`` (a sensor
measured it).

Identifiers follow the shape GB/T 35965.1 (应急信息交互协议 第1部分：预警信息) gives in its
value rules, ``{14-character issuing-unit code}_{YYYYMMDDhhmmss Beijing time}_{N}``,
where the unit code is 6 digits of administrative division (GB/T 2260), 3 of sector
(GB/T 4657), 3 of internal unit and 2 of extension. Its N is one digit per unit and
second; a community opens more than ten alerts in one second, so N here is
``{alert id}.{version}``, which keeps identifiers unique and stable. The unit code is
``alerting.sender_code``; without one, the sender name stands in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

from psycopg import AsyncConnection

from alerting.levels import level_of
from alerting.templates import hazard_wording, render_title
from config.settings import AlertingSettings
from shouwang.models import Alert, DetectionKind, Site
from shouwang.store.alerts import AlertEvent, get_alert, list_events

__all__ = ["CAP_NAMESPACE", "CapMessage", "NotPublic", "cap_feed", "cap_message_of", "cap_messages",
           "cap_xml", "message_for"]

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
_ATOM = "http://www.w3.org/2005/Atom"
_BEIJING = ZoneInfo("Asia/Shanghai")
_UPDATES = frozenset({"escalated", "acknowledged", "suppressed", "silenced", "inhibited"})
_CANCELS = frozenset({"resolved", "expired"})
_CATEGORY: Mapping[str, str] = {
    "smoke": "Fire", "heat": "Fire", "fire": "Fire", "overheat": "Fire",
    "electrical_leak": "Safety", "gas": "Safety", "co": "Safety", "flood": "Safety",
    "sos": "Rescue", "fall": "Health", "heart_rate_high": "Health",
    "heart_rate_low": "Health",
}
_RESPONSE: Mapping[str, str] = {
    "gas": "Evacuate", "co": "Evacuate", "smoke": "Evacuate", "heat": "Evacuate",
    "fire": "Evacuate", "flood": "Avoid",
}


class NotPublic(LookupError):
    """The alert is not public-facing (a device-health alert), so it has no CAP message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CapMessage:
    identifier: str
    sent: float
    msg_type: str  # Alert | Update | Cancel
    note: str


def _cap_time(at: float) -> str:
    """CAP's dateTime: seconds, explicit offset, no "Z" (the schema's pattern).

    >>> _cap_time(1_764_124_800.0)
    '2025-11-26T10:40:00+08:00'
    """
    return dt.datetime.fromtimestamp(int(at), _BEIJING).isoformat()


def _identifier(settings: AlertingSettings, alert_id: int, version: int, at: float) -> str:
    unit = settings.sender_code or settings.sender
    stamp = dt.datetime.fromtimestamp(int(at), _BEIJING).strftime("%Y%m%d%H%M%S")
    return f"{unit}_{stamp}_{alert_id}.{version}"


def cap_messages(settings: AlertingSettings, alert: Alert,
                 events: Sequence[AlertEvent]) -> list[CapMessage]:
    """The alert's CAP messages in order, from its audit trail."""
    messages = [CapMessage(identifier=_identifier(settings, alert.id, 0, alert.opened_at),
                           sent=alert.opened_at, msg_type="Alert", note="")]
    for event in events:
        if event.action in _UPDATES or event.action in _CANCELS:
            kind = "Cancel" if event.action in _CANCELS else "Update"
            messages.append(CapMessage(
                identifier=_identifier(settings, alert.id, len(messages), event.at),
                # The action only: the feed is public, and staff notes may name people.
                sent=event.at, msg_type=kind, note=event.action))
            if kind == "Cancel":
                break
    return messages


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{CAP_NAMESPACE}}}{tag}")
    element.text = text
    return element


def message_for(settings: AlertingSettings, alert: Alert, events: Sequence[AlertEvent],
                site: Site | None) -> ET.Element:
    """The latest CAP message of ``alert`` as an element tree."""
    if alert.kind is not DetectionKind.HAZARD:
        raise NotPublic(alert.id)
    history = cap_messages(settings, alert, events)
    latest = history[-1]
    sender = settings.sender
    root = ET.Element(f"{{{CAP_NAMESPACE}}}alert")
    _sub(root, "identifier", latest.identifier)
    _sub(root, "sender", sender)
    _sub(root, "sent", _cap_time(latest.sent))
    _sub(root, "status", "Exercise" if alert.drill else "Actual")
    _sub(root, "msgType", latest.msg_type)
    _sub(root, "scope", "Public")
    if latest.note:
        _sub(root, "note", latest.note)
    if len(history) > 1:
        _sub(root, "references", " ".join(f"{sender},{m.identifier},{_cap_time(m.sent)}"
                                          for m in history[:-1]))
    language = settings.language
    wording = hazard_wording(alert.hazard, language)
    level = level_of(alert.severity)
    site_name = site.name if site is not None else alert.site
    info = ET.SubElement(root, f"{{{CAP_NAMESPACE}}}info")
    _sub(info, "language", "zh-CN" if language == "zh" else "en-US")
    _sub(info, "category", _CATEGORY.get(alert.hazard, "Other"))
    _sub(info, "event", wording.name)
    _sub(info, "responseType", "AllClear" if latest.msg_type == "Cancel"
         else _RESPONSE.get(alert.hazard, "Monitor"))
    _sub(info, "urgency", "Past" if latest.msg_type == "Cancel" else level.cap_urgency)
    _sub(info, "severity", level.cap_severity)
    _sub(info, "certainty", "Observed")
    _sub(info, "effective", _cap_time(alert.opened_at))
    _sub(info, "senderName", sender)
    _sub(info, "headline", render_title(hazard=alert.hazard, severity=alert.severity,
                                        site_name=site_name, drill=alert.drill,
                                        language=language))
    if alert.message:
        _sub(info, "description", alert.message)
    _sub(info, "instruction", wording.spoken_advice)
    parameter = ET.SubElement(info, f"{{{CAP_NAMESPACE}}}parameter")
    _sub(parameter, "valueName", "warningLevel")
    _sub(parameter, "value", alert.severity.label)
    area = ET.SubElement(info, f"{{{CAP_NAMESPACE}}}area")
    _sub(area, "areaDesc", " ".join(p for p in (site_name, alert.location.describe()) if p))
    if alert.location.lat is not None and alert.location.lon is not None:
        _sub(area, "circle", f"{alert.location.lat:.6f},{alert.location.lon:.6f} 0.05")
    return root


def cap_xml(element: ET.Element) -> bytes:
    return bytes(ET.tostring(element, encoding="utf-8", xml_declaration=True,
                             default_namespace=CAP_NAMESPACE))


# A resident's SOS, fall or heart rate is personal data, not a public warning: alerts of
# wearables never appear in the public feed (docs/SECURITY.md, residents' personal data).
_WORN = "SELECT 1 FROM devices WHERE id = %s AND type = 'wearable'"


async def cap_message_of(conn: AsyncConnection[Any], settings: AlertingSettings,
                         sites: Mapping[str, Site], alert_id: int) -> bytes:
    """GET /api/cap/{id}.xml: raises ``UnknownAlert`` or ``NotPublic``."""
    alert = await get_alert(conn, alert_id)
    cur = await conn.execute(_WORN, (alert.device_id,))
    if await cur.fetchone() is not None:
        raise NotPublic(alert_id)
    events = await list_events(conn, alert_id)
    return cap_xml(message_for(settings, alert, events, sites.get(alert.site)))


async def cap_feed(conn: AsyncConnection[Any], settings: AlertingSettings,
                   sites: Mapping[str, Site], *, base_url: str, now: float,
                   limit: int = 100) -> bytes:
    """GET /api/cap: an Atom feed of the newest public alerts, each linking to its CAP."""
    cur = await conn.execute(
        "SELECT id FROM alerts WHERE kind = %s AND device_id NOT IN "
        "(SELECT id FROM devices WHERE type = 'wearable') "
        "ORDER BY updated_at DESC, id DESC LIMIT %s",
        (DetectionKind.HAZARD.value, limit))
    # Plain tags under a declared default namespace: Atom's attributes are unqualified,
    # which ElementTree's default_namespace cannot write.
    feed = ET.Element("feed", xmlns=_ATOM)

    def atom(parent: ET.Element, tag: str, text: str) -> ET.Element:
        element = ET.SubElement(parent, tag)
        element.text = text
        return element

    atom(feed, "id", f"{base_url.rstrip('/')}/api/cap")
    atom(feed, "title", f"{settings.sender} CAP 1.2")
    atom(feed, "updated", _cap_time(now))
    for (alert_id,) in await cur.fetchall():
        alert = await get_alert(conn, alert_id)
        message = message_for(settings, alert, await list_events(conn, alert_id),
                              sites.get(alert.site))
        entry = ET.SubElement(feed, "entry")
        ns = {"cap": CAP_NAMESPACE}
        atom(entry, "id", message.findtext("cap:identifier", "", ns))
        atom(entry, "title", message.findtext("cap:info/cap:headline", "", ns))
        atom(entry, "updated", message.findtext("cap:sent", "", ns))
        link = ET.SubElement(entry, "link")
        link.set("href", f"{base_url.rstrip('/')}/api/cap/{alert_id}.xml")
        link.set("type", "application/cap+xml")
    return bytes(ET.tostring(feed, encoding="utf-8", xml_declaration=True))
