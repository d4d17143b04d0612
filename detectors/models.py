"""Frozen value types of the detectors package (findings are the kernel's ``Detection``)."""

from __future__ import annotations

from dataclasses import dataclass

from shouwang.models import DetectionKind, Severity

__all__ = ["EventRule"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRule:
    """What one discrete device event (``sos``, ``fall``...) means when it arrives."""

    hazard: str
    kind: DetectionKind
    severity: Severity
    message: str  # short Chinese text for the duty officer
