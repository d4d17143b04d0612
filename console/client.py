"""Who is on the other end of a request: the address the login limit and the audit use.

Behind a reverse proxy every request comes from the proxy, so one user's failed logins
would lock out everyone and the audit would name the proxy. When the connecting address
is one of ``console.trusted_proxies``, the client is the last address in
``X-Forwarded-For`` that is not itself a trusted proxy (the header's left part is
whatever the client chose to send, so it is never believed).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.requests import Request

__all__ = ["client_address", "forwarded_client"]

_UNKNOWN = "unknown"


def _trusted(address: str, proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        parsed = ip_address(address.strip())
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def forwarded_client(peer: str, forwarded_for: str | None,
                     proxies: Sequence[IPv4Network | IPv6Network]) -> str:
    """
    >>> from ipaddress import ip_network
    >>> proxies = [ip_network("10.0.0.0/8")]
    >>> forwarded_client("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.7", proxies)
    '203.0.113.9'
    >>> forwarded_client("198.51.100.1", "203.0.113.9", proxies)  # not a proxy: not believed
    '198.51.100.1'
    >>> forwarded_client("10.0.0.2", None, proxies)
    '10.0.0.2'
    """
    if not forwarded_for or not _trusted(peer, proxies):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, proxies):
            return hop
    return peer


def client_address(request: Request) -> str:
    peer = request.client.host if request.client else _UNKNOWN
    proxies = request.app.state.console.settings.console.trusted_proxies
    return forwarded_client(peer, request.headers.get("x-forwarded-for"), proxies)
