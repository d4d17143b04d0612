"""Where the benchmarks find the real services: .services/env from scripts/services.sh."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def service_env() -> dict[str, str]:
    values: dict[str, str] = {}
    env_file = Path(os.environ.get("SHOUWANG_SERVICES_DIR", ROOT / ".services")) / "env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    values.update({k: v for k, v in os.environ.items() if k.startswith("SHOUWANG_TEST_")})
    missing = [k for k in ("SHOUWANG_TEST_PG_DSN", "SHOUWANG_TEST_MQTT", "SHOUWANG_TEST_KAFKA")
               if k not in values]
    if missing:
        raise SystemExit(f"missing {missing}: run `bash scripts/services.sh start` first")
    return values


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)
