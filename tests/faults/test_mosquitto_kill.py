"""Hard kill -9 of Mosquitto: the one fault here where loss is possible, and its exact bound.

Mosquitto keeps sessions and queued messages in memory and writes them to its persistence
file at shutdown and every ``autosave_interval`` (the shipped config sets none: Mosquitto's
default, 1800 s). SIGKILL skips the shutdown save, so the restarted broker comes back with
the file of the last save. What can be lost is therefore exactly:

    the QoS 1 messages the broker had acknowledged to devices (PUBACK) but not yet
    delivered to ingest when it died.

Everything else is safe: a message ingest had received is written by ingest whatever the
broker does; a message the broker had not acknowledged is sent again by the device; a
message in the last save that was delivered after it comes again and the store's unique
index absorbs it. Ingest's session (its subscription) must be in a save, or what devices
publish after the restart has nobody to be queued for: here the save is triggered with
SIGUSR1 once ingest has subscribed, which is what the periodic autosave does in production.

The loss is not silent: ``seq`` leaves a hole, which the detectors' health check counts
(``seq_gap``, "丢失 N 条"). The tests assert ``landed + gap == published`` and ``gap <= bound``,
where the bound is measured at the kill: the seqs acknowledged to the device, less those
already stored. With ingest keeping up that is about one flush of messages (12 in a run
here, of 800 acknowledged); with ingest away it is everything queued since the last save,
and the second test shows that bound is reached exactly.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time

import orjson
import pytest

from config.settings import HealthSettings
from detectors.health import DeviceHealth
from ingest import MqttSource
from shouwang.models import Detection, Reading
from tests.faults.broker import PrivateMosquitto
from tests.faults.load import DevicePublisher
from tests.faults.pipeline import (
    DEVICE,
    ROOT,
    TOPIC,
    landed_seqs,
    register,
    running_ingest,
    wait_for_rows,
    wait_settled,
)
from tests.integration.mqtt_util import publish_all

pytestmark = pytest.mark.integration

log = logging.getLogger(__name__)

LOAD = 3000


def _seq_gap(seqs: list[int]) -> int:
    """Messages missing between the lowest and highest seq that landed."""
    ordered = sorted(set(seqs))
    return sum(b - a - 1 for a, b in itertools.pairwise(ordered))


def _health(seqs: list[int]) -> list[Detection]:
    """The detectors' health check over the landed seqs, in order."""
    health = DeviceHealth({}, HealthSettings())
    out: list[Detection] = []
    for i, seq in enumerate(sorted(set(seqs))):
        health.observe(Reading(ts=1_795_660_800.0 + i, device_id=DEVICE.id, site=DEVICE.site,
                               metric="lel", value=1.0, seq=seq), out)
    return out


def _counted_by_health(seqs: list[int]) -> int:
    gaps = [d for d in _health(seqs) if d.hazard == "seq_gap" and d.firing]
    return sum(int(m.group(1)) for d in gaps if (m := re.search(r"丢失 (\d+) 条", d.message)))


def _snapshot(seqs: set[int]) -> set[int]:
    """A copy of a set the device's thread may still be adding to."""
    while True:
        try:
            return set(seqs)
        except RuntimeError:  # changed size during the copy
            continue


async def test_mosquitto_kill_9_mid_stream_loss_is_bounded_and_counted(
        pg_dsn: str, db_schema: str, run_id: str, broker: PrivateMosquitto) -> None:
    await register(pg_dsn, db_schema)
    async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
        await asyncio.to_thread(broker.save)  # ingest's session is on disk, as autosave does
        device = DevicePublisher(broker.port, TOPIC, LOAD, chunk=50, pause_s=0.02)
        device.start()
        await wait_for_rows(pg_dsn, db_schema, LOAD // 4)
        # Stored before the kill (a subset of what ingest had), acknowledged after it (a
        # superset of what the dead broker acknowledged): the bound errs on the safe side.
        handed_on = set(await landed_seqs(pg_dsn, db_schema))
        await asyncio.to_thread(broker.stop, kill=True)
        acked_at_kill = _snapshot(device.acked)
        assert len(acked_at_kill) < LOAD, "the kill must come mid-stream"
        at_risk = acked_at_kill - handed_on
        bound = len(at_risk)
        await asyncio.to_thread(broker.start)
        await asyncio.to_thread(device.join)
        await wait_settled(pg_dsn, db_schema, until=LOAD - 1)
        landed = await wait_settled(pg_dsn, db_schema, quiet_s=1.0)
    published = len(device.acked)
    distinct = set(landed)
    gap = _seq_gap(landed)
    log.info("mosquitto kill -9 at %d acknowledged, %d stored: bound %d; published=%d "
             "landed=%d gap=%d duplicated=%d", len(acked_at_kill), len(handed_on), bound,
             published, len(distinct), gap, len(landed) - len(distinct))
    assert published == LOAD
    assert min(distinct) == 0 and max(distinct) == LOAD - 1  # the hole, if any, is inside
    assert len(distinct) + gap == published
    assert gap <= bound, (gap, bound)
    assert set(range(LOAD)) - distinct <= at_risk, "only acknowledged, undelivered ones go"
    assert len(landed) == len(distinct), "a redelivered message is stored once"
    if gap:
        assert _counted_by_health(landed) == gap


async def test_mosquitto_kill_9_with_ingest_away_loses_exactly_the_unsaved_queue(
        pg_dsn: str, db_schema: str, run_id: str, broker: PrivateMosquitto) -> None:
    """Ingest away (its session on the broker), devices go on: the broker queues for it and
    dies before the next save. Every queued message is lost, no more, and counted."""
    await register(pg_dsn, db_schema)
    queued = 500
    now = time.time()

    def messages(first: int, count: int) -> list[tuple[str, bytes]]:
        return [(TOPIC, orjson.dumps({"ts": now + seq * 0.001, "seq": seq,
                                      "values": {"lel": 1.0}}))
                for seq in range(first, first + count)]

    async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
        assert publish_all(("127.0.0.1", broker.port), messages(0, 1)) == 1
        await wait_settled(pg_dsn, db_schema, until=0)
    await asyncio.to_thread(broker.save)  # the last save: ingest's session, nothing queued
    acked = await asyncio.to_thread(publish_all, ("127.0.0.1", broker.port),
                                    messages(1, queued))
    assert acked == queued  # acknowledged to the device, queued for the absent ingest
    await asyncio.to_thread(broker.stop, kill=True)
    await asyncio.to_thread(broker.start)
    async with MqttSource(host="127.0.0.1", port=broker.port, client_id=run_id,
                          topic_root=ROOT) as source:
        assert source.pending() == 0  # the session survived; its queue did not
    async with running_ingest(pg_dsn, db_schema, broker.port, run_id):
        after = 60
        assert publish_all(("127.0.0.1", broker.port), messages(1 + queued, after)) == after
        landed = await wait_settled(pg_dsn, db_schema, until=queued + after)
    published = 1 + queued + after
    gap = _seq_gap(landed)
    bound = queued  # acknowledged since the last save and never handed to ingest
    log.info("mosquitto kill -9, ingest away: published=%d landed=%d gap=%d bound=%d",
             published, len(landed), gap, bound)
    assert landed == [0, *range(1 + queued, published)]
    assert len(landed) + gap == published
    assert gap == bound
    assert _counted_by_health(landed) == gap
