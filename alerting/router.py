"""Which receivers hear about an alert: every matching route, in config order.

A drill alert reaches only receivers that take drills (by default not the loudspeakers).
"""

from __future__ import annotations

from collections.abc import Sequence

from config.settings import Receiver, Route
from shouwang.models import Alert

__all__ = ["Router"]


class Router:
    """Routes from config, resolved to receivers once (config checks the names exist)."""

    def __init__(self, routes: Sequence[Route], receivers: Sequence[Receiver]) -> None:
        self._routes = tuple(routes)
        self._receivers = {r.name: r for r in receivers}
        for route in self._routes:
            missing = [n for n in route.receivers if n not in self._receivers]
            if missing:
                raise ValueError(f"a route names unknown receivers {missing}")

    def receivers_for(self, alert: Alert) -> list[Receiver]:
        """Receivers of every route that matches, each once, in the order first named."""
        chosen: dict[str, Receiver] = {}
        for route in self._routes:
            if route.matches(site=alert.site, hazard=alert.hazard, kind=alert.kind.value,
                             severity=alert.severity):
                for name in route.receivers:
                    receiver = self._receivers[name]
                    if alert.drill and not receiver.takes_drills:
                        continue
                    chosen.setdefault(name, receiver)
        return list(chosen.values())
