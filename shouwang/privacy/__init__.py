"""Residents' personal data: what counts as health data, its retention, export and deletion."""

from shouwang.privacy.health import delete_health_readings, wearable_ids
from shouwang.privacy.residents import (
    ResidentError,
    delete_resident,
    export_resident,
    find_resident,
)
from shouwang.privacy.retention import HealthRetentionService, PurgeResult, purge_health

__all__ = [
    "HealthRetentionService",
    "PurgeResult",
    "ResidentError",
    "delete_health_readings",
    "delete_resident",
    "export_resident",
    "find_resident",
    "purge_health",
    "wearable_ids",
]
