"""The alerting service: detections in, alerts and queued notifications out.

For each batch from ``detections``: one transaction opens or updates the live alerts
and queues their notifications (the outbox), then the changed alerts go out on
``alert-updates``, then the bus offsets are committed. A crash anywhere in between
replays the batch, which opens nothing twice and queues nothing twice. The
dispatcher sends the queued rows alongside, woken at once after each commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

from psycopg_pool import AsyncConnectionPool

from alerting import metrics
from alerting.ack_links import AckLinks
from alerting.clearing import record_cleared
from alerting.escalation import EscalateStage, Escalator, StepQueue
from alerting.inhibit import InhibitStage
from alerting.messages import MessageComposer
from alerting.models import NotifyContext
from alerting.notifiers.apprise_notifier import AppriseNotifier, validate_urls
from alerting.notifiers.base import Notifier
from alerting.outbox import Dispatcher, Pool
from alerting.recipients import RecipientResolver
from alerting.router import Router
from alerting.silences import SilenceStage
from alerting.speech import find_speech
from alerting.stages import QueueNotifications, Stage, chain
from alerting.storm_gate import StormGate
from config.settings import Settings
from shouwang.bus import Bus, Consumer, Message
from shouwang.codec import CodecError, decode_detection, encode_alert
from shouwang.models import Alert, AlertStatus, Detection, DetectionKind, Severity
from shouwang.retry import retry_until_done
from shouwang.store.alerts import get_alert, transition, upsert_live

__all__ = ["AlertingService"]

log = logging.getLogger(__name__)

_BATCH_MAX = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class _Applied:
    changed: list[Alert]  # the latest state of every alert the batch touched
    opened: list[Alert]
    queued: int           # alerts that got new outbox rows


class AlertingService:
    def __init__(self, settings: Settings, bus: Bus, dsn: str, *, schema: str = "public",
                 clock: Callable[[], float] = time.time,
                 notifier: Notifier | None = None) -> None:
        self._settings = settings
        self._bus = bus
        self._dsn = dsn
        self._schema = schema
        self._clock = clock
        self._notifier = notifier
        self._wake = asyncio.Event()  # set after a commit that queued notifications

    async def run(self, stop: asyncio.Event) -> None:
        config = self._settings.alerting
        notifier = self._notifier
        if notifier is None:
            validate_urls(config.receivers)  # a bad URL fails here, not at the first alert
            notifier = AppriseNotifier()
        links = (AckLinks(config.ack_secret.get_secret_value().encode(), config.ack_link_base,
                          config.ack_link_ttl_s) if config.ack_secret is not None else None)
        if links is None and any(r.channel != "broadcast" for r in config.receivers):
            log.info("SMS carry no acknowledgement link: SHOUWANG_ALERTING__ACK_SECRET is unset")
        resolver = RecipientResolver(config)
        composer = MessageComposer(config, sites=self._settings.site_map(),
                                   devices=self._settings.device_map(), links=links)
        gate = StormGate(composer, threshold=config.storm_threshold,
                         window_s=config.storm_window_s)
        step_queue = StepQueue(resolver, gate)
        # dedupe (upsert_live) → inhibit → silence → escalate (policies: route, storm, queue)
        # → the plain routes for alerts no policy covers (storm, queue) → notify
        # (dispatcher) → record.
        plain_routes = QueueNotifications(Router(config.routes, config.receivers), gate)
        pipeline = chain(InhibitStage(config.inhibit_rules), SilenceStage(),
                         EscalateStage(config, step_queue), plain_routes)
        # A silence that ends while the alert still fires: escalation starts over from then.
        reopened = chain(InhibitStage(config.inhibit_rules), SilenceStage(),
                         EscalateStage(config, step_queue, restart=True), plain_routes)
        escalator = Escalator(config, step_queue, resolver, reopened=reopened, wake=self._wake,
                              on_changed=partial(self._announce, stop), clock=self._clock)
        speech = find_speech(config.broadcast, announce=any(
            r.channel == "broadcast" for r in config.receivers))
        dispatcher = Dispatcher(notifier, config, wake=self._wake, clock=self._clock,
                                language=config.language, speech=speech)
        pool: Pool = AsyncConnectionPool(
            self._dsn, open=False, name="alerting", min_size=2, max_size=4,
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "options": f"-c search_path={self._schema}",
                    "application_name": "shouwang-alerting", "connect_timeout": 10})
        await pool.open(wait=True, timeout=30)
        try:
            async with (self._bus.consumer(["detections"], config.group) as consumer,
                        asyncio.TaskGroup() as tasks):
                tasks.create_task(self._consume(consumer, pool, pipeline, stop),
                                  name="alerting.consume")
                tasks.create_task(dispatcher.run(pool, stop), name="alerting.dispatch")
                tasks.create_task(escalator.run(pool, stop), name="alerting.escalate")
        finally:
            await pool.close()

    async def _consume(self, consumer: Consumer, pool: Pool, pipeline: Stage,
                       stop: asyncio.Event) -> None:
        while not stop.is_set():
            messages = await consumer.batch(_BATCH_MAX, 0.2)
            if not messages:
                continue
            detections = self._decode(messages)
            now = self._clock()  # once per batch: every stage sees the same instant
            applied = await retry_until_done(
                partial(self._apply, pool, pipeline, detections, now), stop,
                what="alert write")
            for alert in applied.opened:
                metrics.ALERTS_OPENED.labels(alert.hazard, alert.severity.label).inc()
                log.info("alert opened alert=%d site=%s device_id=%s hazard=%s severity=%s%s",
                         alert.id, alert.site, alert.device_id, alert.hazard,
                         alert.severity.label, " (drill)" if alert.drill else "")
            if applied.queued:
                self._wake.set()
            if applied.changed:
                await self._announce(stop, applied.changed)
            await consumer.commit(messages)

    async def _announce(self, stop: asyncio.Event, alerts: list[Alert]) -> None:
        updates = [(str(a.id), encode_alert(a)) for a in alerts]
        await retry_until_done(partial(self._bus.publish, "alert-updates", updates),
                               stop, what="alert-updates publish")

    def _decode(self, messages: Sequence[Message]) -> list[Detection]:
        detections = []
        for m in messages:
            try:
                detections.append(decode_detection(m.value))
            except CodecError as err:
                # Nothing can be routed from it; holding the partition would stop all alerts.
                metrics.BAD_MESSAGES.inc()
                log.error("skipping undecodable detection key=%s partition=%d offset=%d: %s",
                          m.key, m.partition, m.offset, err)
        return detections

    def _as_anomaly_alert(self, detection: Detection) -> Detection:
        """A learned anomaly is something to look at, not an emergency: its alert stays low
        (``anomaly_max_severity``), pages no one unless a route or policy names
        ``kinds: [anomaly]`` (the defaults name hazards only), and resolves by itself
        when the episode ends."""
        ceiling = Severity[self._settings.alerting.anomaly_max_severity.upper()]
        if detection.severity <= ceiling:
            return detection
        return replace(detection, severity=ceiling)

    async def _apply(self, pool: Pool, pipeline: Stage, detections: Sequence[Detection],
                     now: float) -> _Applied:
        changed: dict[int, Alert] = {}
        opened: list[Alert] = []
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for detection in detections:
                if detection.kind is DetectionKind.ANOMALY:
                    if not self._settings.alerting.anomaly_alerts:
                        continue
                    detection = self._as_anomaly_alert(detection)
                if detection.firing:
                    alert, created, raised = await upsert_live(cur, detection, now)
                    if created or raised:
                        # A rise routes again: receivers of the higher severity (the
                        # loudspeakers for red) hear of it; the outbox's unique step
                        # keeps everyone already told from being told twice.
                        opened.append(alert)
                else:
                    found = await record_cleared(cur, detection, now)
                    if found is None:
                        continue
                    alert = found
                    if detection.kind is DetectionKind.ANOMALY:
                        # No danger to confirm over: a finding closes with its episode,
                        # or the console would fill with them (history stays).
                        alert = await transition(
                            conn, alert.id, AlertStatus.RESOLVED, actor="system",
                            source="detector", action="resolved",
                            note="the readings are ordinary again", now=now)
                changed[alert.id] = alert
            # The latest state, once per alert: a later detection in this batch may have
            # raised the severity of an alert it opened.
            opened = [changed[i] for i in dict.fromkeys(a.id for a in opened)]
            await pipeline(NotifyContext(now=now, cur=cur, step=0), opened)
            for alert in opened:  # a stage may have suppressed it: publish what it is now
                changed[alert.id] = await get_alert(conn, alert.id)
        return _Applied(changed=list(changed.values()), opened=opened, queued=len(opened))
