"""What the console accepts from a browser."""

from __future__ import annotations

import pytest

from console.params import ActionBody, AlertQuery, BadInput, NotificationQuery, parse
from shouwang.lifecycle import LIVE_STATUSES
from shouwang.models import AlertStatus


@pytest.mark.parametrize(("status", "expected"), [
    ([], ()),
    (["open"], (AlertStatus.OPEN,)),
    (["open,acknowledged"], (AlertStatus.ACKNOWLEDGED, AlertStatus.OPEN)),
    (["open", "escalated"], (AlertStatus.ESCALATED, AlertStatus.OPEN)),
    ([" open , ,resolved "], (AlertStatus.OPEN, AlertStatus.RESOLVED)),
    (["open", "open"], (AlertStatus.OPEN,)),
])
def test_status_filter(status: list[str], expected: tuple[AlertStatus, ...]) -> None:
    assert parse(AlertQuery, {"status": status}).status == expected


def test_live_means_every_live_status() -> None:
    assert set(parse(AlertQuery, {"status": ["live"]}).status) == LIVE_STATUSES
    mixed = parse(AlertQuery, {"status": ["live,resolved"]}).status
    assert set(mixed) == LIVE_STATUSES | {AlertStatus.RESOLVED}


def test_unknown_status_names_the_choices() -> None:
    with pytest.raises(BadInput, match=r"status: .*unknown status 'opened'.*live"):
        parse(AlertQuery, {"status": ["open,opened"]})


@pytest.mark.parametrize("data", [{"limit": "0"}, {"limit": "x"}, {"limit": "5001"},
                                  {"site": ""}, {"colour": "red"}])
def test_bad_alert_query(data: dict[str, str]) -> None:
    with pytest.raises(BadInput):
        parse(AlertQuery, data)


def test_query_strings_become_numbers() -> None:
    query = parse(NotificationQuery, {"alert_id": "12", "limit": "5"})
    assert (query.alert_id, query.limit) == (12, 5)
    assert parse(NotificationQuery, {}).alert_id is None
    with pytest.raises(BadInput, match="alert_id"):
        parse(NotificationQuery, {"alert_id": "-1"})


def test_action_body_defaults_until_logins_exist() -> None:
    assert parse(ActionBody, {}) == ActionBody(actor="console", note="")
    assert parse(ActionBody, {"actor": "王", "note": "已处置"}).actor == "王"


@pytest.mark.parametrize("data", [{"actor": ""}, {"actor": "x" * 65}, {"note": "n" * 2001},
                                  {"actor": 7}, {"role": "admin"}, ["console"], "console"])
def test_bad_action_body(data: object) -> None:
    with pytest.raises(BadInput):
        parse(ActionBody, data)
