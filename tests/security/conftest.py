"""The authenticated Mosquitto listener that scripts/services.sh starts next to the anonymous one.

Its accounts (``auth/credentials``: "user password site" per line) are made at start with
random passwords; a missing or unreachable listener fails the test, never skips it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _host_port, _required


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthBroker:
    host: str
    port: int
    passwords: dict[str, str]
    sites: dict[str, str]


@pytest.fixture(scope="session")
def mqtt_auth() -> AuthBroker:
    address = _required("SHOUWANG_TEST_MQTT_AUTH")
    credentials = Path(_required("SHOUWANG_TEST_MQTT_AUTH_CREDENTIALS"))
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as err:
        pytest.fail(f"authenticated Mosquitto listener at {address} is not reachable ({err}); "
                    "restart the services: bash scripts/services.sh restart", pytrace=False)
    passwords: dict[str, str] = {}
    sites: dict[str, str] = {}
    for line in credentials.read_text().splitlines():
        user, password, site = line.split()
        passwords[user] = password
        if site != "-":
            sites[user] = site
    return AuthBroker(host=host, port=port, passwords=passwords, sites=sites)
