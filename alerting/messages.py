"""The body of one outbox row: the alert rendered in the form of the receiver's channel.

Every path that queues a message goes through ``MessageComposer``: the first notice,
escalation steps and reminders, storm summaries, and a fallback standing in for a
failed receiver, which gets the text of its own channel (an SMS stays one 70-character
segment, a loudspeaker gets the spoken, structured broadcast, an email the long form),
never the primary's text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alerting.ack_links import AckLinks
from alerting.broadcast import broadcast_message
from alerting.models import Language
from alerting.storm import summary_text
from alerting.templates import body_for, form_of, render
from config.settings import AlertingSettings, Receiver
from shouwang.models import Alert, Device, Site

__all__ = ["MessageComposer"]

_REMINDER: Mapping[Language, str] = {"zh": "【提醒·未确认】", "en": "[REMINDER, unacknowledged] "}
_ACK: Mapping[Language, str] = {"zh": " 确认:", "en": " Ack: "}


class MessageComposer:
    def __init__(self, settings: AlertingSettings, *, sites: Mapping[str, Site],
                 devices: Mapping[str, Device], links: AckLinks | None = None) -> None:
        self._language: Language = settings.language
        self._timezone = settings.timezone
        self._site_wide = settings.broadcast.site_wide_hazards
        self._sites = sites
        self._devices = devices
        self._links = links

    def body(self, alert: Alert, receiver: Receiver, now: float, *, reminder: bool = False,
             link: bool = True) -> str:
        """One alert for ``receiver``; people's channels get an acknowledgement link."""
        text = render(alert, site=self._sites.get(alert.site),
                      device=self._devices.get(alert.device_id), language=self._language,
                      timezone=self._timezone)
        if form_of(receiver.channel) == "broadcast":
            return broadcast_message([alert], text.broadcast, self._language,
                                     site_wide_hazards=self._site_wide).encode()
        body = body_for(receiver.channel, text)
        if reminder:
            body = _REMINDER[self._language] + body
        if link and self._links is not None:
            body += _ACK[self._language] + self._links.url(alert.id, receiver.name, now)
        return body

    def summary(self, alerts: Sequence[Alert], receiver: Receiver) -> str:
        """One message standing for many alerts (an alarm storm)."""
        first = alerts[0]
        site = self._sites.get(first.site)
        text = summary_text(alerts, site.name if site else first.site, self._language)
        if form_of(receiver.channel) == "broadcast":
            return broadcast_message(alerts, text, self._language,
                                     site_wide_hazards=self._site_wide).encode()
        return text
