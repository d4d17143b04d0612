"""Run a fleet with a live display (rich) and a summary at the end or on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from simulators.fleet import FleetCounters, FleetPlan, FleetRun

__all__ = ["FleetSummary", "run_fleet"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSummary:
    devices: int
    workers: int
    seconds: float
    sent: int  # handed to the MQTT client
    acked: int  # acknowledged by the broker
    readings: int
    errors: int
    target_rate: float

    @property
    def rate(self) -> float:
        """Acknowledged messages per second over the whole run."""
        return self.acked / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> Table:
        table = Table(title="fleet summary", show_header=False)
        for name, value in (
                ("devices", f"{self.devices:,}"), ("workers", str(self.workers)),
                ("duration", f"{self.seconds:.1f} s"),
                ("messages sent", f"{self.sent:,}"),
                ("messages acknowledged", f"{self.acked:,}"),
                ("readings acknowledged", f"{self.readings:,}"),
                ("rate (acknowledged)", f"{self.rate:,.0f} msg/s (target {self.target_rate:,.0f})"),
                ("errors", str(self.errors))):
            table.add_row(name, value)
        return table


def _status(plan: FleetPlan, now: FleetCounters, rate_now: float, alive: int) -> Table:
    table = Table(show_header=False, box=None)
    table.add_row("site", plan.site, "devices", f"{plan.devices:,}")
    table.add_row("workers alive", f"{alive}/{plan.workers}", "target", f"{plan.rate:,.0f} msg/s")
    table.add_row("sent", f"{now.handed:,}", "acknowledged", f"{now.acked:,}")
    table.add_row("rate now", f"{rate_now:,.0f} msg/s", "errors", f"{now.errors:,}")
    return table


async def run_fleet(plan: FleetPlan, stop: asyncio.Event, *, duration_s: float | None = None,
                    console: Console | None = None, refresh_s: float = 0.5) -> FleetSummary:
    """Run ``plan`` until ``stop``, ``duration_s`` of publishing, or every worker has ended.

    Time is counted from the first worker's first message: starting processes and
    building their devices is not publishing.
    """
    console = console or Console()
    fleet = FleetRun(plan)
    progress = Progress(TextColumn("[bold]fleet"), BarColumn(), TextColumn("{task.fields[what]}"),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task("fleet", total=duration_s, what="starting")
    fleet.start()
    last_acked, last_at = 0, time.monotonic()
    started: float | None = None
    rate_now = 0.0
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), refresh_s)
                now = time.monotonic()
                counters = fleet.counters()
                started = counters.publishing_since
                if now - last_at > 0:
                    rate_now = (counters.acked - last_acked) / (now - last_at)
                last_acked, last_at = counters.acked, now
                progress.update(task, completed=0.0 if started is None else now - started,
                                what=f"{counters.acked:,} acked, {rate_now:,.0f} msg/s")
                live.update(Group(progress, _status(plan, counters, rate_now, fleet.alive)))
                if duration_s is not None and started is not None and now - started >= duration_s:
                    break
                if counters.workers_done == plan.workers:
                    log.error("every fleet worker has ended (see errors above)")
                    break
    finally:
        # Workers flush their last acknowledgements on stop: that time counts too.
        await asyncio.to_thread(fleet.stop)
        final = fleet.counters()
        since = final.publishing_since
        seconds = 0.0 if since is None else time.monotonic() - since
    summary = FleetSummary(devices=plan.devices, workers=plan.workers, seconds=seconds,
                           sent=final.handed, acked=final.acked, readings=final.readings,
                           errors=final.errors, target_rate=plan.rate)
    console.line()
    console.print(summary.table())
    log.info("fleet done devices=%d seconds=%.1f sent=%d acked=%d rate=%.0f errors=%d",
             summary.devices, summary.seconds, summary.sent, summary.acked, summary.rate,
             summary.errors)
    return summary
