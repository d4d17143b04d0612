"""The drills section: a silent drill is abandoned only after several missed heartbeats."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import DrillSettings


def test_stale_after_must_span_several_heartbeats() -> None:
    with pytest.raises(ValidationError, match="at least 3 heartbeat_s"):
        DrillSettings(heartbeat_s=10.0, stale_after_s=20.0)
    assert DrillSettings(heartbeat_s=10.0, stale_after_s=30.0).stale_after_s == 30.0
