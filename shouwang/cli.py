"""The ``shouwang`` command: one entry point per service, plus the all-in-one ``run``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import start_http_server

from config.settings import ConfigError, Settings, load
from shouwang.catalog import DeviceType

__all__ = ["main"]

log = logging.getLogger("shouwang")

_REPO = Path(__file__).resolve().parent.parent
_SERVICES_SCRIPT = _REPO / "scripts" / "services.sh"

Command = Callable[[Settings, argparse.Namespace, asyncio.Event], Coroutine[Any, Any, None]]


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stderr,
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )
    for noisy in ("aiokafka", "kafka", "uvicorn.error", "apprise", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def _run_until_signal(command: Command, settings: Settings,
                            args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await command(settings, args, stop)


async def _cmd_run(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from shouwang.runtime import run_all

    await run_all(settings, stop)


async def _cmd_ingest(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from ingest import DatabaseHop, KafkaHop, StoreWriterService
    from shouwang.privacy import HealthRetentionService
    from shouwang.store import ReadingStore
    from shouwang.wiring import (
        ServiceRunner,
        ingest_service,
        mqtt_broker,
        mqtt_source,
        open_bus,
        postgres,
        prepare_store,
    )

    kafka = settings.bus.kind == "kafka"
    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        async with ReadingStore(dsn, settings.database.schema_name) as store:
            runner = ServiceRunner(stop)
            if kafka and args.role in ("writer", "both"):
                runner.add("store-writer", StoreWriterService(bus, store).run)
            if args.role == "both" or args.role == ("writer" if kafka else "mqtt"):
                # The process that writes readings also expires wearers' health data (an
                # advisory lock keeps several such processes from purging at once).
                runner.add("health-retention", HealthRetentionService(
                    settings, dsn, schema=settings.database.schema_name).run)
            if args.role in ("mqtt", "both"):
                async with mqtt_broker(settings) as (host, port), \
                        mqtt_source(settings, host, port) as source:
                    hop = KafkaHop(bus) if kafka else DatabaseHop(store, bus)
                    runner.add("ingest", ingest_service(settings, source, hop, dsn=dsn).run)
                    await runner.run()
                    return
            await runner.run()


async def _cmd_detect(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from detectors.service import DetectorService
    from shouwang.wiring import open_bus, postgres, prepare_store

    # PostgreSQL holds detector state, so a moved partition resumes where it was.
    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        await DetectorService(settings, bus, dsn=dsn,
                              schema=settings.database.schema_name).run(stop)


async def _cmd_train(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    import time

    from detectors.training import train_models
    from shouwang.store import connect
    from shouwang.wiring import postgres, prepare_store

    types = [DeviceType(t) for t in args.type] if args.type else None
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        conn = await connect(dsn, settings.database.schema_name)
        try:
            results = await train_models(conn, settings.detectors.training, time.time(), types)
        finally:
            await conn.close()
    for r in results:
        sys.stdout.write(f"{r.device_type.value}: {r.rows} messages, "
                         + (f"version {r.version} (threshold {r.threshold:.3f})\n"
                            if r.version is not None else "too few, not trained\n"))


async def _cmd_alert(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from alerting.service import AlertingService
    from shouwang.wiring import open_bus, postgres, prepare_store

    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        await AlertingService(settings, bus, dsn, schema=settings.database.schema_name).run(stop)


async def _cmd_console(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from console.service import ConsoleService
    from shouwang.wiring import open_bus, postgres, prepare_store

    async with postgres(settings) as dsn, open_bus(settings) as bus:
        await prepare_store(dsn, settings)
        await ConsoleService(settings, bus, dsn, schema=settings.database.schema_name).run(stop)


async def _cmd_simulate(settings: Settings, args: argparse.Namespace,
                        stop: asyncio.Event) -> None:
    from shouwang.wiring import mqtt_broker
    from simulators.service import SimulatorService

    if args.devices is not None:
        await _simulate_fleet(settings, args, stop)
        return
    async with mqtt_broker(settings) as (host, port):
        await SimulatorService(settings, host, port).run(stop)


async def _simulate_fleet(settings: Settings, args: argparse.Namespace,
                          stop: asyncio.Event) -> None:
    import os

    from shouwang.wiring import mqtt_broker
    from simulators.fleet import FleetPlan, fleet_devices
    from simulators.fleet_view import run_fleet
    from simulators.registry import write_registry

    if args.write_config is not None:
        devices = fleet_devices(args.site, args.devices, rate=args.rate, seed=args.seed)
        count = write_registry(args.write_config, {args.site: args.site}, devices)
        log.info("wrote %d simulated devices to %s; start ingest with it, then run the "
                 "same simulate command without --write-config", count, args.write_config)
        return
    m = settings.mqtt
    async with mqtt_broker(settings) as (host, port):
        plan = FleetPlan(site=args.site, devices=args.devices, rate=args.rate, seed=args.seed,
                         workers=args.workers or FleetPlan.auto_workers(args.rate,
                                                                        os.cpu_count() or 1),
                         host=host, port=port, topic_root=m.topic_root, username=m.username,
                         password=m.password.get_secret_value() if m.password else None)
        await run_fleet(plan, stop, duration_s=args.duration)


async def _cmd_drill(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from shouwang.store import connect
    from shouwang.wiring import mqtt_broker, postgres, prepare_store
    from simulators.drill import DrillPlan, run_drill
    from simulators.scorecard import load_scorecard

    schema = settings.database.schema_name
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        if args.purge is not None:
            await _purge_drill(dsn, schema, args.purge)
            return
        if args.abandon is not None:
            await _abandon_drill(dsn, schema, args.abandon)
            return
        if args.show is not None:
            conn = await connect(dsn, schema, autocommit=True)
            try:
                card = await load_scorecard(conn, args.show)
            finally:
                await conn.close()
            if card is None:
                raise ValueError(f"no finished drill {args.show}")
        else:
            if not (args.scenario and args.site and args.device):
                raise ValueError("a drill needs SCENARIO, --site and --device (or --show ID)")
            plan = DrillPlan(scenario=args.scenario, site=args.site, device_id=args.device,
                             speed=args.speed, start_after_s=args.start_after,
                             run_s=args.run_for, wait_s=args.wait, seed=args.seed)
            m = settings.mqtt
            async with mqtt_broker(settings) as (host, port):
                card = await run_drill(
                    plan, [d.to_device() for d in settings.devices], dsn=dsn, schema=schema,
                    mqtt_host=host, mqtt_port=port, topic_root=m.topic_root,
                    username=m.username,
                    password=m.password.get_secret_value() if m.password else None, stop=stop,
                    timing=settings.drills)
            await _retire_drills(dsn, schema, settings)
    if args.markdown is not None:
        args.markdown.write_text(card.markdown(), encoding="utf-8")
    sys.stdout.write(card.markdown())


async def _abandon_drill(dsn: str, schema: str, drill_id: int) -> None:
    import getpass
    import time

    from shouwang.store import connect
    from simulators.drill_purge import UnknownDrill, abandon_drill

    conn = await connect(dsn, schema, autocommit=True)
    try:
        await abandon_drill(conn, drill_id, now=time.time(),
                            reason=f"marked by {getpass.getuser()}: its player stopped")
    except UnknownDrill as err:
        raise ValueError(str(err)) from None
    finally:
        await conn.close()
    sys.stdout.write(f"drill {drill_id} marked failed (abandoned); --purge {drill_id} "
                     "deletes its data\n")


async def _purge_drill(dsn: str, schema: str, drill_id: int) -> None:
    import time

    from shouwang.store import connect
    from simulators.drill_purge import DrillNotFinished, UnknownDrill, purge_drill

    conn = await connect(dsn, schema, autocommit=True)
    try:
        counts = await purge_drill(conn, drill_id, now=time.time())
    except (UnknownDrill, DrillNotFinished) as err:
        raise ValueError(str(err)) from None
    finally:
        await conn.close()
    sys.stdout.write(" ".join(f"{k}={v}" for k, v in counts.to_json().items()) + "\n")


async def _retire_drills(dsn: str, schema: str, settings: Settings) -> None:
    """drills.keep false: purge the drills that are due (this one too, at purge_after_s 0)."""
    import time

    from shouwang.store import connect
    from simulators.drill_purge import purge_expired

    if settings.drills.keep:
        return
    conn = await connect(dsn, schema, autocommit=True)
    try:
        await purge_expired(conn, now=time.time(), purge_after_s=settings.drills.purge_after_s)
    finally:
        await conn.close()


async def _cmd_replay(settings: Settings, args: argparse.Namespace,
                      stop: asyncio.Event) -> None:
    import time

    from shouwang.store import connect
    from shouwang.wiring import mqtt_broker, postgres
    from simulators.publisher import MqttPublisher
    from simulators.replay import parse_instant, play, read_csv, read_db, replay_schedule

    if args.csv is not None:
        readings = read_csv(args.csv)
    else:
        if not (args.site and args.since and args.until):
            raise ValueError("replay needs --csv PATH, or --site, --since and --until")
        async with postgres(settings) as dsn:
            conn = await connect(dsn, settings.database.schema_name, autocommit=True)
            try:
                readings = await read_db(conn, site=args.site,
                                         since_ts=parse_instant(args.since),
                                         until_ts=parse_instant(args.until))
            finally:
                await conn.close()
    m = settings.mqtt
    schedule = replay_schedule(readings, topic_root=m.topic_root, speed=args.speed,
                               epoch0=time.time(), keep_ts=args.keep_ts, drill=args.drill)
    log.info("replaying %d readings as %d messages at %gx", len(readings), len(schedule),
             args.speed)
    async with mqtt_broker(settings) as (host, port), MqttPublisher(
            host, port, username=m.username,
            password=m.password.get_secret_value() if m.password else None) as publisher:
        sent = await play(schedule, publisher, stop)
        await publisher.flush(60.0)
    log.info("replay done: %d messages sent, %d acknowledged", sent, publisher.messages_acked)


async def _cmd_sink(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from shouwang.sink import LocalSink

    await LocalSink(settings.sink.host, settings.sink.port,
                    record_file=Path(args.record) if args.record else None).run(stop)


async def _cmd_migrate(settings: Settings, args: argparse.Namespace,
                       stop: asyncio.Event) -> None:
    from shouwang.wiring import postgres, prepare_store

    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)


async def _cmd_silence(settings: Settings, args: argparse.Namespace,
                       stop: asyncio.Event) -> None:
    import time

    from alerting.silence_admin import SilenceRequest, run_silence_command
    from shouwang.store import connect
    from shouwang.wiring import postgres, prepare_store

    request = SilenceRequest(action=args.action, site=args.site, building=args.building,
                             device_id=args.device, hazards=tuple(args.hazard),
                             minutes=args.minutes, by=args.by, reason=args.reason,
                             silence_id=args.id)
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        conn = await connect(dsn, settings.database.schema_name, autocommit=True)
        try:
            text = await run_silence_command(conn, request, now=time.time(),
                                             timezone=settings.alerting.timezone)
        finally:
            await conn.close()
    sys.stdout.write(text + "\n")


async def _cmd_users(settings: Settings, args: argparse.Namespace, stop: asyncio.Event) -> None:
    from console.user_admin import add_user, read_new_password
    from console.users import Role
    from shouwang.wiring import postgres, prepare_store

    if args.action != "add":
        await _cmd_users_access(settings, args)
        return
    if args.name is None or args.role is None or not args.site:
        raise ValueError("users add needs NAME, --role and at least one --site")
    password = read_new_password()
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        await add_user(settings, dsn, name=args.name, role=Role(args.role), sites=args.site,
                       password=password)


async def _cmd_users_access(settings: Settings, args: argparse.Namespace) -> None:
    from console.user_admin import describe_users, disable_user, enable_user
    from shouwang.wiring import postgres, prepare_store

    if args.action != "list" and args.name is None:
        raise ValueError(f"users {args.action} needs the user's NAME")
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        if args.action == "list":
            text = await describe_users(settings, dsn)
        elif args.action == "disable":
            ended = await disable_user(settings, dsn, name=args.name)
            text = (f"{args.name} was disabled already" if ended is None else
                    f"disabled {args.name}; {ended} session(s) ended")
        else:
            enabled = await enable_user(settings, dsn, name=args.name)
            text = f"enabled {args.name}" if enabled else f"{args.name} was enabled already"
    sys.stdout.write(text + "\n")


async def _cmd_devices(settings: Settings, args: argparse.Namespace,
                       stop: asyncio.Event) -> None:
    from shouwang.provision import AccountRole, provision_account

    if args.devices_action == "release":
        await _cmd_devices_release(settings, args)
        return
    role = AccountRole(args.service) if args.service else AccountRole.DEVICE
    done = provision_account(settings, args.username, site=args.site, role=role,
                             password_file=args.password_file, acl_file=args.acl_file)
    # The only copy of the password: the operator hands it to the device and it is gone.
    sys.stdout.write(f"username: {done.account.username}\npassword: {done.password}\n"
                     + "".join(f"acl: {rule}\n" for rule in done.acl)
                     + "reload the broker to apply: kill -HUP <mosquitto pid>\n")


async def _cmd_devices_release(settings: Settings, args: argparse.Namespace) -> None:
    from ingest.quarantine_store import release_device
    from shouwang.wiring import postgres, prepare_store

    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        released = await release_device(dsn, settings.database.schema_name, args.device_id,
                                        by=args.by or "operator")
    if not released:
        raise ValueError(f"device {args.device_id!r} is not quarantined")
    sys.stdout.write(f"released {args.device_id}; ingest lets it through within "
                     f"{settings.ingest.flood.sync_s:g} s\n")


async def _cmd_passwd(settings: Settings, args: argparse.Namespace,
                      stop: asyncio.Event) -> None:
    from console.user_admin import change_password, read_new_password
    from shouwang.wiring import postgres, prepare_store

    password = read_new_password()
    async with postgres(settings) as dsn:
        await prepare_store(dsn, settings)
        await change_password(settings, dsn, name=args.name, password=password)


async def _cmd_residents(settings: Settings, args: argparse.Namespace,
                         stop: asyncio.Event) -> None:
    from shouwang.privacy.resident_admin import run_resident_command

    text = await run_resident_command(settings, action=args.action, resident_id=args.id,
                                      out=args.out, confirm=args.confirm, by=args.by)
    sys.stderr.write(text + "\n")


async def _cmd_privacy(settings: Settings, args: argparse.Namespace,
                       stop: asyncio.Event) -> None:
    from shouwang.privacy.resident_admin import run_purge_command

    sys.stdout.write(await run_purge_command(settings) + "\n")


def _cmd_services(args: argparse.Namespace) -> int:
    if not _SERVICES_SCRIPT.exists():
        log.error("services script not found at %s", _SERVICES_SCRIPT)
        return 2
    return subprocess.call(["bash", str(_SERVICES_SCRIPT), args.action])


def _cmd_detect_csv(args: argparse.Namespace) -> int:
    from detectors.anomaly import make_detector
    from detectors.csv_scoring import score_csv

    try:
        score_csv(make_detector(args.detector), args.source, args.target)
    except (OSError, ValueError) as err:
        log.error("detect-csv failed: %s", err)
        return 1
    return 0


def _detect_csv_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from detectors.anomaly import DESCRIPTIONS

    listing = "\n".join(f"  {name:<10} {text}" for name, text in DESCRIPTIONS.items())
    p = sub.add_parser(
        "detect-csv", help="score a timestamp,value CSV with a streaming anomaly detector",
        description="Score IN.csv row by row (row i sees rows 0..i only) and write OUT.csv "
                    "with an added anomaly_score column in [0, 1]. No config file needed.",
        epilog="detectors:\n" + listing, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", default="default", choices=sorted(DESCRIPTIONS),
                   metavar="NAME", help="anomaly detector (default: default; see below)")
    p.add_argument("source", type=Path, metavar="IN.csv")
    p.add_argument("target", type=Path, metavar="OUT.csv")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shouwang",
        description="守望 Shouwang: IoT emergency monitoring and early warning for communities.")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str, command: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, default=None,
                       help="YAML config file (SHOUWANG_* environment variables override it)")
        p.set_defaults(command_fn=command)
        return p

    with_config("run", "run everything in one process: embedded database and broker unless "
                "configured, in-process bus, simulated community, console", _cmd_run)
    ingest = with_config("ingest", "MQTT ingestor and store writer", _cmd_ingest)
    ingest.add_argument("--role", choices=["mqtt", "writer", "both"], default="both",
                        help="mqtt: MQTT to bus; writer: bus to database (Kafka only)")
    with_config("detect", "detector worker: readings in, detections out", _cmd_detect)
    with_config("train", "train the per-device-type IsolationForest models from the readings "
                "history and store them as new versions", _cmd_train).add_argument(
        "--type", action="append", choices=[t.value for t in DeviceType],
        help="only this device type (repeatable; default all)")
    with_config("alert", "alerting service: detections to alerts and notifications",
                _cmd_alert)
    with_config("console", "web console for duty officers and fire stations", _cmd_console)
    simulate = with_config("simulate", "simulated community of devices publishing over MQTT; "
                           "with --devices, a load fleet", _cmd_simulate)
    simulate.add_argument("--site", default="fleet", help="fleet: the site of every device")
    simulate.add_argument("--devices", type=int, default=None,
                          help="fleet: number of synthetic devices (types mixed)")
    simulate.add_argument("--rate", type=float, default=1000.0,
                          help="fleet: messages per second, whole fleet")
    simulate.add_argument("--duration", type=float, default=None,
                          help="fleet: stop after this many seconds (default: Ctrl-C)")
    simulate.add_argument("--seed", type=int, default=7, help="fleet: seed (reproducible)")
    simulate.add_argument("--workers", type=int, default=None,
                          help="fleet: publishing processes (default: by rate and cores)")
    simulate.add_argument("--write-config", type=Path, default=None, metavar="PATH",
                          help="fleet: write the devices as a YAML registry for ingest, exit")
    drill = with_config("drill", "inject a library scenario as a drill (drill=true) and record "
                        "its scorecard in the database", _cmd_drill)
    drill.add_argument("scenario", nargs="?", default=None, help="scenario name, e.g. kitchen_fire")
    drill.add_argument("--site", default=None)
    drill.add_argument("--device", default=None, help="registered device the scenario runs on")
    drill.add_argument("--speed", type=float, default=10.0, help="simulated s per wall s")
    drill.add_argument("--start-after", type=float, default=30.0,
                       help="simulated s of ordinary readings before onset")
    drill.add_argument("--run-for", type=float, default=1800.0,
                       help="simulated s the scenario plays after onset")
    drill.add_argument("--wait", type=float, default=600.0,
                       help="wall s to wait for acknowledgement and resolution afterwards")
    drill.add_argument("--seed", type=int, default=7)
    drill.add_argument("--markdown", type=Path, default=None, help="also write it to this file")
    drill.add_argument("--show", type=int, default=None, metavar="ID",
                       help="print a finished drill's scorecard instead of running one")
    drill.add_argument("--purge", type=int, default=None, metavar="ID",
                       help="delete a finished drill's readings, alerts and their messages "
                            "(its scorecard stays)")
    drill.add_argument("--abandon", type=int, default=None, metavar="ID",
                       help="mark a drill whose player died (crash, kill -9) as failed, so "
                            "it can be purged")
    replay = with_config("replay", "replay recorded readings (CSV or database) over MQTT at "
                         "N times speed", _cmd_replay)
    replay.add_argument("--csv", type=Path, default=None,
                        help="ts,device_id,site,metric,value[,seq] file")
    replay.add_argument("--site", default=None, help="database mode: the site to replay")
    replay.add_argument("--since", default=None, help="database mode: epoch s or ISO 8601")
    replay.add_argument("--until", default=None, help="database mode: epoch s or ISO 8601")
    replay.add_argument("--speed", type=float, default=60.0, help="recorded s per wall s")
    replay.add_argument("--keep-ts", action="store_true", help="keep the recorded timestamps")
    replay.add_argument("--drill", action="store_true", help="mark payloads drill: true")
    sink = with_config("sink", "local stand-in for SMS/broadcast providers (records messages)",
                       _cmd_sink)
    sink.add_argument("--record", default=None, help="append received messages to this file")
    with_config("migrate", "create or upgrade the database schema and sync the registry",
                _cmd_migrate)
    users = with_config("users", "console users: add one (password from "
                        "SHOUWANG_USER_PASSWORD or stdin, never the command line), disable "
                        "(no login, sessions end) or enable one, list them", _cmd_users)
    users.add_argument("action", choices=["add", "disable", "enable", "list"])
    users.add_argument("name", nargs="?")
    users.add_argument("--role", default=None,
                       choices=["admin", "duty_officer", "fire_station", "viewer", "care"],
                       help="add: required")
    users.add_argument("--site", action="append", default=[],
                       help="add: a site the user sees (repeat for several; '*' = every site)")
    silence = with_config("silence", "maintenance windows: silence a device or area's alerts "
                          "for a while (never SOS)", _cmd_silence)
    silence.add_argument("action", choices=["add", "list", "cancel"])
    silence.add_argument("id", nargs="?", type=int, help="the silence to cancel")
    silence.add_argument("--site")
    silence.add_argument("--building")
    silence.add_argument("--device")
    silence.add_argument("--hazard", action="append", default=[],
                         help="repeat for several; none = every hazard except sos")
    silence.add_argument("--minutes", type=float, default=60.0)
    silence.add_argument("--by", default="", help="who (the audit record)")
    silence.add_argument("--reason", default="", help="why (the audit record)")
    passwd = with_config("passwd", "change a console user's password (from "
                         "SHOUWANG_USER_PASSWORD or stdin) and end their sessions", _cmd_passwd)
    passwd.add_argument("name")
    residents = with_config("residents", "a resident's personal data on request: export it "
                            "as JSON, or delete it (audited)", _cmd_residents)
    residents.add_argument("action", choices=["export", "delete"])
    residents.add_argument("id", help="the resident's id in the config (residents:)")
    residents.add_argument("--out", type=Path, default=None,
                           help="export: write here (mode 600) instead of stdout")
    residents.add_argument("--confirm", action="store_true", help="delete: yes, really")
    residents.add_argument("--by", default="", help="on whose request (the audit record)")
    privacy = with_config("privacy", "delete wearable health readings older than "
                          "privacy.health_retention_days now (shouwang run does it hourly)",
                          _cmd_privacy)
    privacy.add_argument("action", choices=["purge"])
    devices = with_config("devices", "device accounts on the MQTT broker", _cmd_devices)
    devices_sub = devices.add_subparsers(dest="devices_action", required=True, metavar="ACTION")
    provision = devices_sub.add_parser(
        "provision", help="create or replace a device's MQTT password and ACL entry")
    provision.add_argument("username", metavar="DEVICE_ID", help="device id (or service user)")
    provision.add_argument("--site", default=None, help="the device's site (default: registry)")
    provision.add_argument("--service", choices=["ingest", "simulator"], default=None,
                           help="provision a service account instead of a device")
    provision.add_argument("--password-file", type=Path,
                           default=_REPO / "config" / "mosquitto" / "passwd")
    provision.add_argument("--acl-file", type=Path, default=_REPO / "config" / "mosquitto" / "acl")
    release = devices_sub.add_parser(
        "release", help="end a flooding device's quarantine (ingest drops its messages)")
    release.add_argument("device_id", metavar="DEVICE_ID")
    release.add_argument("--by", default="", help="who (kept in device_quarantine)")
    services = sub.add_parser("services", help="install/start/stop the local real services "
                              "(PostgreSQL, Mosquitto, Kafka) used by the tests",
                              description="Install, start, stop or show the local services.")
    services.add_argument("action", choices=["install", "start", "stop", "status"])
    _detect_csv_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level)
    if args.command == "services":
        return _cmd_services(args)
    if args.command == "detect-csv":
        return _cmd_detect_csv(args)
    try:
        settings = load(args.config)
    except ConfigError as err:
        print(f"shouwang: {err}", file=sys.stderr)  # the operator must see why it stopped
        return 2
    if settings.metrics.port:
        # Scraped by Prometheus; every service's counters live in this process's registry.
        start_http_server(settings.metrics.port, addr=settings.metrics.host)
    try:
        asyncio.run(_run_until_signal(args.command_fn, settings, args))
    except KeyboardInterrupt:
        pass
    except Exception as err:  # report, don't dump a traceback on the operator
        log.error("shouwang %s failed: %s", args.command, err, exc_info=log.isEnabledFor(
            logging.DEBUG))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
