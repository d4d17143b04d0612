"""The alert lifecycle as an explicit state machine: a table of allowed transitions.

Both alerting (system transitions) and the console (people's actions) go through
``check_transition``; anything not in the table raises ``IllegalTransition``.
"""

from __future__ import annotations

from shouwang.models import AlertStatus

__all__ = ["LIVE_STATUSES", "TRANSITIONS", "IllegalTransition", "check_transition"]

_S = AlertStatus

# open → acknowledged → resolved is the common path. Escalated: nobody acknowledged in time
# (escalated → escalated is the next step). Suppressed: silenced or inhibited; it can open
# again when that ends, and someone on site may still acknowledge it. Expired: it ran out
# without anyone resolving it.
TRANSITIONS: dict[AlertStatus, frozenset[AlertStatus]] = {
    _S.OPEN: frozenset({_S.ACKNOWLEDGED, _S.ESCALATED, _S.SUPPRESSED, _S.RESOLVED, _S.EXPIRED}),
    _S.ESCALATED: frozenset({_S.ACKNOWLEDGED, _S.ESCALATED, _S.SUPPRESSED, _S.RESOLVED,
                             _S.EXPIRED}),
    _S.SUPPRESSED: frozenset({_S.OPEN, _S.ACKNOWLEDGED, _S.RESOLVED, _S.EXPIRED}),
    _S.ACKNOWLEDGED: frozenset({_S.RESOLVED, _S.EXPIRED}),
    _S.RESOLVED: frozenset(),
    _S.EXPIRED: frozenset(),
}

# An alert in one of these is "live": a repeat detection updates it.
LIVE_STATUSES: frozenset[AlertStatus] = frozenset(
    {_S.OPEN, _S.ACKNOWLEDGED, _S.ESCALATED, _S.SUPPRESSED})


class IllegalTransition(ValueError):
    """The requested change is not in the transition table."""

    def __init__(self, current: AlertStatus, wanted: AlertStatus) -> None:
        super().__init__(f"an alert that is {current.value} cannot become {wanted.value}")
        self.current = current
        self.wanted = wanted


def check_transition(current: AlertStatus, wanted: AlertStatus) -> None:
    """Raise ``IllegalTransition`` unless ``current -> wanted`` is allowed.

    >>> check_transition(AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)
    >>> check_transition(AlertStatus.RESOLVED, AlertStatus.OPEN)
    Traceback (most recent call last):
    ...
    shouwang.lifecycle.IllegalTransition: an alert that is resolved cannot become open
    """
    if wanted not in TRANSITIONS[current]:
        raise IllegalTransition(current, wanted)
