"""A detector worker in its own process, for tests that kill it with SIGKILL.

    python -m tests.integration.detector_worker_proc BOOTSTRAP PREFIX DSN SCHEMA DEVICE...
"""

from __future__ import annotations

import asyncio
import logging
import sys

from config.settings import DeviceConfig, Settings, SiteConfig
from detectors import DetectorService
from shouwang.bus.kafka import KafkaBus
from shouwang.catalog import DeviceType


async def _main(bootstrap: str, prefix: str, dsn: str, schema: str, devices: list[str]) -> None:
    settings = Settings.model_validate({
        "sites": [SiteConfig(id="s1", name="测试小区")],
        "devices": [DeviceConfig(id=d, type=DeviceType.GAS, site="s1") for d in devices],
        "detectors": {"snapshot_interval_s": 0.5},
    })
    async with KafkaBus(bootstrap, topic_prefix=prefix, partitions=4) as bus:
        await DetectorService(settings, bus, poll_s=0.1, dsn=dsn, schema=schema).run(
            asyncio.Event())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
