"""Where the TimescaleDB-only tests find their server, and the one skip they share.

CI has no TimescaleDB (no Debian package); these tests run when SHOUWANG_TEST_TIMESCALE_DSN
names a database on a server that preloads it (see test_timescale.py's docstring).
"""

from __future__ import annotations

import os

import pytest

__all__ = ["TIMESCALE_DSN", "needs_timescale"]

TIMESCALE_DSN = os.environ.get("SHOUWANG_TEST_TIMESCALE_DSN", "")

needs_timescale = [
    pytest.mark.integration,
    pytest.mark.skipif(not TIMESCALE_DSN, reason=(
        "SHOUWANG_TEST_TIMESCALE_DSN is not set: needs a PostgreSQL that preloads TimescaleDB, "
        "which CI does not have (see tests/integration/test_timescale.py)")),
]
