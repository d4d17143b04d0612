"""The audit trail: who changed the configuration, console users and residents' data."""

from shouwang.audit.config_record import config_changes, flat_config, record_config
from shouwang.audit.log import AuditCategory, local_actor, record
from shouwang.audit.trail import TrailEntry, TrailQuery, list_trail

__all__ = [
    "AuditCategory",
    "TrailEntry",
    "TrailQuery",
    "config_changes",
    "flat_config",
    "list_trail",
    "local_actor",
    "record",
    "record_config",
]
