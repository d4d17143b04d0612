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
from alerting.templates import HAZARD_WORDING
from shouwang.models import Alert

__all__ = ["summary_text"]


def summary_text(alerts: Sequence[Alert], site_name: str, language: Language) -> str:
    """
    >>> from shouwang.models import AlertStatus, DetectionKind, Severity
    >>> a = [Alert(id=n, site="s", device_id=f"d{n}", hazard="offline", severity=Severity.BLUE,
    ...            kind=DetectionKind.HEALTH, status=AlertStatus.OPEN, opened_at=0.0)
    ...      for n in range(30)]
    >>> summary_text(a, "阳光小区", "zh")
    '【守望】阳光小区 同时出现30条告警：设备离线30条。详情请登录值班台查看'
    """
    counts = Counter(a.hazard for a in alerts)
    drill = any(a.drill for a in alerts)
    wording = HAZARD_WORDING[language]
    parts = [(wording[h].name if h in wording else h, n) for h, n in counts.most_common()]
    if language == "zh":
        listed = "，".join(f"{name}{n}条" for name, n in parts)
        return (("【演练】" if drill else "") + f"【守望】{site_name} 同时出现{len(alerts)}条告警："
                f"{listed}。详情请登录值班台查看")
    listed = ", ".join(f"{n} x {name}" for name, n in parts)
    return (("[DRILL] " if drill else "") + f"[Shouwang] {site_name}: {len(alerts)} alerts at "
            f"once: {listed}. See the console for details.")
