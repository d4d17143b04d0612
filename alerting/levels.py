"""China's four-colour warning levels and what each means in CAP 1.2.

One row per level: the colour names people read, and the CAP ``severity`` and
``urgency`` a machine reads. Red is the worst (特别严重), blue the least (一般), as in
the national emergency plans; CAP's scale runs Extreme > Severe > Moderate > Minor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shouwang.models import Severity

__all__ = ["LEVELS", "CapSeverity", "CapUrgency", "Level", "level_of"]

CapSeverity = Literal["Extreme", "Severe", "Moderate", "Minor", "Unknown"]
CapUrgency = Literal["Immediate", "Expected", "Future", "Past", "Unknown"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Level:
    severity: Severity
    colour_zh: str        # 红
    name_zh: str          # 红色预警
    name_en: str          # Red warning
    gravity_zh: str       # 特别严重: the plans' word for the level
    cap_severity: CapSeverity
    cap_urgency: CapUrgency


LEVELS: Mapping[Severity, Level] = {
    Severity.RED: Level(severity=Severity.RED, colour_zh="红", name_zh="红色预警",
                        name_en="Red warning", gravity_zh="特别严重",
                        cap_severity="Extreme", cap_urgency="Immediate"),
    Severity.ORANGE: Level(severity=Severity.ORANGE, colour_zh="橙", name_zh="橙色预警",
                           name_en="Orange warning", gravity_zh="严重",
                           cap_severity="Severe", cap_urgency="Immediate"),
    Severity.YELLOW: Level(severity=Severity.YELLOW, colour_zh="黄", name_zh="黄色预警",
                           name_en="Yellow warning", gravity_zh="较重",
                           cap_severity="Moderate", cap_urgency="Expected"),
    Severity.BLUE: Level(severity=Severity.BLUE, colour_zh="蓝", name_zh="蓝色预警",
                         name_en="Blue warning", gravity_zh="一般",
                         cap_severity="Minor", cap_urgency="Expected"),
}


def level_of(severity: Severity) -> Level:
    """
    >>> level_of(Severity.ORANGE).cap_severity, level_of(Severity.ORANGE).colour_zh
    ('Severe', '橙')
    """
    return LEVELS[severity]
