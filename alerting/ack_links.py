"""One-click acknowledgement from a phone: a short signed link in the SMS.

The link works without a login, so the link itself is the credential: it names the
alert, the receiver it was sent to (a short code of its name) and an expiry, and an
HMAC-SHA256 over all three with a server secret. Changing any part breaks the
signature; an expired link is refused. GET shows a tiny confirmation page (so a
link preview that fetches the URL acknowledges nothing); POST acknowledges, recorded
as done by that receiver from the SMS link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from shouwang.lifecycle import IllegalTransition
from shouwang.models import Alert, AlertStatus
from shouwang.store.alerts import UnknownAlert, get_alert, transition

__all__ = ["AckLinks", "AckPage", "BadLink", "LinkClaim", "acknowledge_by_link",
           "confirm_page"]

_SIG_BYTES = 9  # 72 bits: 12 URL characters, far beyond guessing within a link's life


class BadLink(ValueError):
    """The link is malformed, forged, expired, or names a receiver the alert never had."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkClaim:
    alert_id: int
    receiver_code: str
    expires_at: int


def _code(receiver: str) -> str:
    return hashlib.sha256(receiver.encode()).hexdigest()[:4]


class AckLinks:
    """Makes and checks links ``{base}/ack/{alert:x}.{expires:x}.{receiver code}.{sig}``."""

    def __init__(self, secret: bytes, base_url: str, ttl_s: float) -> None:
        if len(secret) < 16:
            raise ValueError("the acknowledgement link secret must be at least 16 bytes")
        self._secret = secret
        self._base = base_url.rstrip("/")
        self._ttl_s = ttl_s

    def _sign(self, alert_id: int, receiver: str, expires_at: int) -> str:
        mac = hmac.new(self._secret, f"{alert_id}\n{receiver}\n{expires_at}".encode(),
                       hashlib.sha256).digest()[:_SIG_BYTES]
        return base64.urlsafe_b64encode(mac).decode()

    def token(self, alert_id: int, receiver: str, now: float) -> str:
        expires_at = int(now + self._ttl_s)
        return (f"{alert_id:x}.{expires_at:x}.{_code(receiver)}."
                f"{self._sign(alert_id, receiver, expires_at)}")

    def url(self, alert_id: int, receiver: str, now: float) -> str:
        return f"{self._base}/ack/{self.token(alert_id, receiver, now)}"

    @staticmethod
    def parse(token: str) -> LinkClaim:
        parts = token.split(".")
        if len(parts) != 4:
            raise BadLink("malformed link")
        try:
            return LinkClaim(alert_id=int(parts[0], 16), expires_at=int(parts[1], 16),
                             receiver_code=parts[2])
        except ValueError:
            raise BadLink("malformed link") from None

    def verify(self, token: str, receivers: Sequence[str], now: float) -> tuple[int, str]:
        """(alert id, receiver) when ``token`` is genuine and current.

        ``receivers``: those the alert was sent to; the one whose code and signature
        match is who acknowledges.
        """
        claim = self.parse(token)
        signature = token.rsplit(".", 1)[1]
        for receiver in receivers:
            if _code(receiver) != claim.receiver_code:
                continue
            if hmac.compare_digest(signature,
                                   self._sign(claim.alert_id, receiver, claim.expires_at)):
                if now > claim.expires_at:
                    raise BadLink("this link has expired")
                return claim.alert_id, receiver
        raise BadLink("this link is not valid")


async def _receivers_of(conn: AsyncConnection[Any], alert_id: int) -> list[str]:
    cur = await conn.execute("SELECT DISTINCT receiver FROM notifications WHERE alert_id = %s",
                             (alert_id,))
    return [r[0] for r in await cur.fetchall()]


@dataclass(frozen=True, slots=True, kw_only=True)
class AckPage:
    status: int
    html: str
    alert: Alert | None = None  # set when this request acknowledged it


_PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>
</head><body style="font-family:sans-serif;max-width:30em;margin:2em auto;padding:0 1em">
<h1 style="font-size:1.3em">{title}</h1><p>{text}</p>{form}</body></html>"""


def _page(status: int, title: str, text: str, form: str = "",
          alert: Alert | None = None) -> AckPage:
    return AckPage(status=status, html=_PAGE.format(title=html.escape(title),
                                                    text=html.escape(text), form=form),
                   alert=alert)


async def confirm_page(links: AckLinks, conn: AsyncConnection[Any], token: str,
                       now: float) -> AckPage:
    """GET: what the alert is, and one button; nothing changes."""
    try:
        alert_id = links.parse(token).alert_id
        alert_id, _receiver = links.verify(token, await _receivers_of(conn, alert_id), now)
        alert = await get_alert(conn, alert_id)
    except (BadLink, UnknownAlert) as err:
        return _page(403, "链接无效 Link not valid", str(err))
    text = f"{alert.message or alert.hazard} · {alert.location.describe() or alert.device_id}"
    if alert.status is AlertStatus.ACKNOWLEDGED:
        return _page(200, "已确认 Already acknowledged", text)
    form = ('<form method="post"><button type="submit" style="font-size:1.3em;padding:.5em 2em">'
            '确认收到 Acknowledge</button></form>')
    return _page(200, f"确认告警 #{alert.id}", text, form)


async def acknowledge_by_link(links: AckLinks, conn: AsyncConnection[Any], token: str,
                              now: float) -> AckPage:
    """POST: acknowledge as the receiver the link was sent to."""
    try:
        alert_id = links.parse(token).alert_id
        alert_id, receiver = links.verify(token, await _receivers_of(conn, alert_id), now)
        alert = await transition(conn, alert_id, AlertStatus.ACKNOWLEDGED, actor=receiver,
                                 source="sms-link", note="acknowledged from the SMS link",
                                 now=now)
    except (BadLink, UnknownAlert) as err:
        return _page(403, "链接无效 Link not valid", str(err))
    except IllegalTransition as err:
        return _page(409, "无法确认 Cannot acknowledge", str(err))
    return _page(200, "已确认 Acknowledged", f"告警 #{alert.id} 已由 {receiver} 确认。",
                 alert=alert)
