"""Alarm-storm protection: one summary message instead of hundreds.

When one flush would send a recipient more than ``storm_threshold`` messages (a power
cut takes a building's devices offline, a gateway breaks), they get one summary that
counts the alerts by hazard and names the site; the console has the detail. When to
summarise (also across batches, within ``storm_window_s``) is ``storm_gate.py``'s job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from alerting.models import Language
from alerting.templates import SMS_LIMIT, hazard_wording
from shouwang.models import Alert

__all__ = ["summary_text"]


def summary_text(alerts: Sequence[Alert], site_name: str, language: Language) -> str:
    """Counts by hazard, most frequent first, as many kinds as fit one SMS segment.

    >>> from shouwang.models import AlertStatus, DetectionKind, Severity
    >>> def alerts(*hazards):
    ...     return [Alert(id=n, site="s", device_id=f"d{n}", hazard=h, severity=Severity.BLUE,
    ...                   kind=DetectionKind.HEALTH, status=AlertStatus.OPEN, opened_at=0.0)
    ...             for n, h in enumerate(hazards)]
    >>> summary_text(alerts(*["offline"] * 30), "阳光小区", "zh")
    '【守望】阳光小区 同时出现30条告警：设备离线30条。详情请登录值班台查看'
    >>> text = summary_text(alerts("offline", "offline", "gas", "smoke", "stuck", "flood",
    ...                            "battery_low", "seq_gap", "clock_skew"), "阳光小区", "zh")
    >>> len(text) <= 70, text.endswith("等3类。详情请登录值班台查看")
    (True, True)
    >>> text[:31]
    '【守望】阳光小区 同时出现9条告警：设备离线2条，燃气泄漏1条'
    """
    counts = Counter(a.hazard for a in alerts).most_common()
    names = [(hazard_wording(h, language).name, n) for h, n in counts]
    drill = any(a.drill for a in alerts)
    if language == "zh":
        head = ("【演练】" if drill else "") + f"【守望】{site_name} 同时出现{len(alerts)}条告警："
        tail = "。详情请登录值班台查看"
        items = [f"{name}{n}条" for name, n in names]
        joiner = "，"

        def more(k: int) -> str:
            return f"等{k}类"
    else:
        head = (("[DRILL] " if drill else "") + f"[Shouwang] {site_name}: {len(alerts)} "
                "alerts at once: ")
        tail = ". See the console for details."
        items = [f"{n} x {name}" for name, n in names]
        joiner = ", "

        def more(k: int) -> str:
            return f" and {k} more kinds"
    # The first kind always; then as many as keep the whole text within one segment.
    shown = 1
    while shown < len(items) and len(head + joiner.join(items[:shown + 1]) + tail + (
            more(len(items) - shown - 1) if shown + 1 < len(items) else "")) \
            <= SMS_LIMIT[language]:
        shown += 1
    rest = more(len(items) - shown) if shown < len(items) else ""
    return head + joiner.join(items[:shown]) + rest + tail
