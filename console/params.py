"""What the console accepts from a browser: query strings and JSON bodies, checked once here."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from console.models import DeviceStatus
from shouwang.catalog import DeviceType
from shouwang.lifecycle import LIVE_STATUSES
from shouwang.models import AlertStatus

__all__ = [
    "ActionBody",
    "AlertQuery",
    "AssignBody",
    "BadInput",
    "DeviceQuery",
    "LoginBody",
    "NotificationQuery",
    "ReadingsQuery",
    "parse",
]

_M = TypeVar("_M", bound=BaseModel)

LIVE = "live"  # shorthand for every status in which an alert still needs attention


class BadInput(ValueError):
    """The request does not fit its model; the message names each bad field."""


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AlertQuery(_Input):
    """``?status=open&status=escalated``, ``?status=open,escalated`` or ``?status=live``."""

    status: tuple[AlertStatus, ...] = ()
    site: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=500, ge=1, le=5000)

    @field_validator("status", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:  # Any: raw query values, checked by the field type
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        wanted: set[AlertStatus] = set()
        for item in value:
            for name in str(item).split(","):
                name = name.strip()
                if name == LIVE:
                    wanted |= LIVE_STATUSES
                elif name:
                    try:
                        wanted.add(AlertStatus(name))
                    except ValueError:
                        choices = ", ".join([LIVE, *(s.value for s in AlertStatus)])
                        raise ValueError(f"unknown status {name!r} (one of {choices})") from None
        return tuple(sorted(wanted))


class NotificationQuery(_Input):
    alert_id: int | None = Field(default=None, ge=1)
    limit: int = Field(default=100, ge=1, le=1000)


class ActionBody(_Input):
    """Body of acknowledge/resolve. The actor recorded is the logged-in user; ``actor`` is
    still accepted from older clients and ignored."""

    actor: str = Field(default="console", min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)


class AssignBody(_Input):
    """Body of assign: a console user's name, or a person's name from the alerting groups."""

    assignee: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)


class DeviceQuery(_Input):
    """Filters of the device list; every one optional, all must hold."""

    type: DeviceType | None = None
    status: DeviceStatus | None = None
    site: str | None = Field(default=None, min_length=1, max_length=64)
    battery_below: float | None = Field(default=None, ge=0, le=100)
    silent_s: float | None = Field(default=None, gt=0,
                                   description="not heard from for this long (or never)")


class ReadingsQuery(_Input):
    metric: str = Field(min_length=1, max_length=64)
    hours: float = Field(default=24, gt=0, le=24 * 31)
    buckets: int = Field(default=120, ge=10, le=1000)


class LoginBody(_Input):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def parse(model: type[_M], data: Any) -> _M:  # Any: untrusted input
    """Validate ``data``; ``BadInput`` says which field is wrong and why."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False):
            where = ".".join(str(part) for part in e["loc"]) or "body"
            problems.append(f"{where}: {e['msg']}")
        raise BadInput("; ".join(problems)) from err
