"""Fixtures shared by the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.broker import SHIPPED_SETTINGS, PrivateMosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """A private Mosquitto with the shipped settings, started, for one test to restart or
    kill (the shared broker other tests use is never touched)."""
    with PrivateMosquitto(tmp_path / "mqtt", SHIPPED_SETTINGS) as private:
        yield private
