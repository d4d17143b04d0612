"""The loudspeakers' message on real services: one structured object with the spoken text,
priority, zone, alert id, drill flag and language, over MQTT (real Mosquitto, apprise
``mqtt://``) and HTTP (the local sink, apprise ``json://``); with a WAV clip rendered by
the local TTS engine (espeak-ng, installed by ``scripts/services.sh install``), stored in
the database and fetched from the console app, which shares no directory with alerting.

The engine must be there: its absence fails the audio tests instead of skipping them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alerting.audio_store import load_clip
from alerting.speech import AUDIO_NAME, wav_duration_s
from config.settings import (
    AlertingSettings,
    BroadcastSettings,
    DatabaseSettings,
    DeviceConfig,
    EscalationPolicy,
    EscalationStep,
    Receiver,
    Recipient,
    RecipientGroup,
    Settings,
)
from shouwang.catalog import DeviceType
from shouwang.models import Severity
from shouwang.sink import LocalSink
from tests.integration.test_alerting_broadcast_zones import listening
from tests.integration.test_alerting_escalation import _sent, gas, service, settings_for
from tests.integration.test_alerting_public_pages import console
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration


def loudspeakers(base: Settings, urls: tuple[str, ...],
                 **broadcast: Any) -> Settings:  # Any: BroadcastSettings fields
    config = AlertingSettings(
        receivers=(Receiver(name="speakers", channel="broadcast", urls=urls),),
        groups=(RecipientGroup(name="public", drill=True, recipients=(
            Recipient(name="loudspeakers", receivers=("speakers",)),)),),
        policies=(EscalationPolicy(name="loudspeakers", hazards=("gas", "flood"),
                                   max_reminders=0,
                                   steps=(EscalationStep(groups=("public",)),)),),
        retry_base_s=1.0, retry_max_s=4.0, send_timeout_s=5.0,
        broadcast=BroadcastSettings(**broadcast))
    flood = DeviceConfig(id="water-garage", type=DeviceType.WATER, site="sunshine",
                         building="9", floor="B1")
    return base.model_copy(update={"alerting": config, "devices": (*base.devices, flood)})


def assert_valid_wav(data: bytes) -> float:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a RIFF/WAVE file"
    duration = wav_duration_s(data)
    assert duration > 0.5  # a spoken warning, not an empty file
    return duration


@pytest.mark.usefixtures("tts_engine")
async def test_mqtt_controller_gets_the_structured_message_and_its_audio(
        pg_dsn: str, db_schema: str, sink: LocalSink, mqtt_addr: tuple[str, int],
        run_id: str, tmp_path: Path) -> None:
    host, port = mqtt_addr
    topic = f"{run_id}/broadcast/controller"
    settings = loudspeakers(settings_for(sink.port), (f"mqtt://{host}:{port}/{topic}?qos=1",),
                            audio_url_base="http://console.example/broadcast/audio")
    with listening(mqtt_addr, topic) as heard:
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(55.0, Severity.RED))
            await eventually(lambda: _sent(db, 1), "the broadcast")

            async def arrived() -> bool:
                return len(heard) >= 1
            await eventually(arrived, "the message at the broadcast controller")
            cur = await db.execute("SELECT id FROM alerts")
            [(alert_id,)] = await cur.fetchall()
    [(_, payload)] = heard
    message = json.loads(payload)  # the object alone, no title line in front
    assert message["type"] == "shouwang.broadcast"
    assert message["text"].startswith("紧急通知：阳光小区3号楼2单元5层502室发生燃气泄漏。")
    assert (message["alert_id"], message["alert_ids"]) == (alert_id, [alert_id])
    assert (message["priority"], message["priority_name"], message["severity"]) == (
        4, "emergency", "red")
    assert message["zone"] == {"scope": "building", "site": "sunshine", "building": "3"}
    assert (message["drill"], message["language"], message["hazards"]) == (False, "zh",
                                                                            ["gas"])
    audio = message["audio"]
    assert AUDIO_NAME.match(audio["file"]) and audio["format"] == "wav"
    assert audio["url"] == f"http://console.example/broadcast/audio/{audio['file']}"
    # The console: its own settings, the same database, no directory shared with alerting.
    alone = Settings(database=DatabaseSettings(data_dir=tmp_path / "pg"))
    async with console(alone, pg_dsn, db_schema, clock=run.clock) as web:
        fetched = await web.get(urlsplit(audio["url"]).path)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "audio/wav"
    assert abs(assert_valid_wav(fetched.content) - audio["duration_s"]) < 0.05


@pytest.mark.usefixtures("tts_engine")
async def test_http_controller_gets_a_drill_for_the_whole_site_in_english(
        pg_dsn: str, db_schema: str, sink: LocalSink) -> None:
    settings = loudspeakers(settings_for(sink.port),
                            (f"json://127.0.0.1:{sink.port}/broadcast",))
    settings = settings.model_copy(update={"alerting": settings.alerting.model_copy(
        update={"language": "en"})})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(0.8, Severity.ORANGE, drill=True, device="water-garage",
                              hazard="flood"))
        await eventually(lambda: _sent(db, 1), "the drill broadcast")
        [received] = sink.received("broadcast")
        clip = await load_clip(db, json.loads(received.body)["audio"]["file"])
    assert received.title == ""  # everything is in the message
    message = json.loads(received.body)
    assert message["text"].startswith("[DRILL] Attention please. Flooding at 阳光小区")
    # A drill is the lowest priority, whatever its colour; a flood concerns the whole site.
    assert (message["priority"], message["priority_name"], message["drill"]) == (0, "drill",
                                                                                 True)
    assert message["zone"] == {"scope": "site", "site": "sunshine", "building": None}
    assert message["language"] == "en"
    assert "url" not in message["audio"]  # no public base configured: the name only
    assert clip is not None and abs(assert_valid_wav(clip) - message["audio"]["duration_s"]) < 0.05


async def test_without_a_tts_engine_the_text_goes_out_and_the_log_says_so_once(
        pg_dsn: str, db_schema: str, sink: LocalSink,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = loudspeakers(settings_for(sink.port),
                            (f"json://127.0.0.1:{sink.port}/broadcast",),
                            tts_command="no-such-tts-engine")
    settings = settings.model_copy(update={"devices": (*settings.devices, DeviceConfig(
        id="gas-8", type=DeviceType.GAS, site="sunshine", building="8"))})
    with caplog.at_level(logging.INFO, logger="alerting"):
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(55.0, Severity.RED))
            await eventually(lambda: _sent(db, 1), "the first broadcast")
            await run.publish(gas(56.0, Severity.RED, device="gas-8"))
            await eventually(lambda: _sent(db, 2), "the second broadcast")
            cur = await db.execute("SELECT count(*) FROM broadcast_audio")
            assert await cur.fetchone() == (0,)
    messages = [json.loads(m.body) for m in sink.received("broadcast")]
    assert [m["zone"]["building"] for m in messages] == ["3", "8"]
    assert all("audio" not in m and m["text"].startswith("紧急通知") for m in messages)
    said = [r for r in caplog.records if "no text-to-speech engine" in r.getMessage()]
    assert len(said) == 1

