"""The loudspeakers' message on real services: one structured object with the spoken text,
priority, zone, alert id, drill flag and language, over MQTT (real Mosquitto, apprise
``mqtt://``) and HTTP (the local sink, apprise ``json://``); with a WAV file rendered by
the local TTS engine (espeak-ng, installed by ``scripts/services.sh install``).

In CI the engine must be there: its absence fails the audio tests instead of skipping
them. On a developer's machine without it they are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from alerting.speech import AUDIO_NAME
from alerting.web import public_routes
from config.settings import (
    AlertingSettings,
    BroadcastSettings,
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
from tests.integration.test_alerting_service import eventually

pytestmark = pytest.mark.integration


def loudspeakers(base: Settings, urls: tuple[str, ...], audio: Path,
                 **broadcast: Any) -> Settings:  # Any: BroadcastSettings fields
    config = AlertingSettings(
        receivers=(Receiver(name="speakers", channel="broadcast", urls=urls),),
        groups=(RecipientGroup(name="public", drill=True, recipients=(
            Recipient(name="loudspeakers", receivers=("speakers",)),)),),
        policies=(EscalationPolicy(name="loudspeakers", hazards=("gas", "flood"),
                                   max_reminders=0,
                                   steps=(EscalationStep(groups=("public",)),)),),
        retry_base_s=1.0, retry_max_s=4.0, send_timeout_s=5.0,
        broadcast=BroadcastSettings(audio_dir=audio, **broadcast))
    flood = DeviceConfig(id="water-garage", type=DeviceType.WATER, site="sunshine",
                         building="9", floor="B1")
    return base.model_copy(update={"alerting": config, "devices": (*base.devices, flood)})


def assert_valid_wav(path: Path) -> float:
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a RIFF/WAVE file"
    with wave.open(str(path), "rb") as clip:
        duration = clip.getnframes() / clip.getframerate()
    assert duration > 0.5  # a spoken warning, not an empty file
    return duration


@pytest.mark.usefixtures("tts_engine")
async def test_mqtt_controller_gets_the_structured_message_and_its_audio(
        pg_dsn: str, db_schema: str, sink: LocalSink, mqtt_addr: tuple[str, int],
        run_id: str, tmp_path: Path) -> None:
    host, port = mqtt_addr
    topic = f"{run_id}/broadcast/controller"
    settings = loudspeakers(settings_for(sink.port), (f"mqtt://{host}:{port}/{topic}?qos=1",),
                            tmp_path, audio_url_base="http://console.example/broadcast/audio")
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
    path = Path(audio["file"])
    assert path.parent == tmp_path and AUDIO_NAME.match(path.name)
    assert audio["url"] == f"http://console.example/broadcast/audio/{path.name}"
    assert abs(assert_valid_wav(path) - audio["duration_s"]) < 0.05


@pytest.mark.usefixtures("tts_engine")
async def test_http_controller_gets_a_drill_for_the_whole_site_in_english(
        pg_dsn: str, db_schema: str, sink: LocalSink, tmp_path: Path) -> None:
    settings = loudspeakers(settings_for(sink.port),
                            (f"json://127.0.0.1:{sink.port}/broadcast",), tmp_path)
    settings = settings.model_copy(update={"alerting": settings.alerting.model_copy(
        update={"language": "en"})})
    async with service(settings, pg_dsn, db_schema) as (run, db):
        await run.publish(gas(0.8, Severity.ORANGE, drill=True, device="water-garage",
                              hazard="flood"))
        await eventually(lambda: _sent(db, 1), "the drill broadcast")
    [received] = sink.received("broadcast")
    assert received.title == ""  # everything is in the message
    message = json.loads(received.body)
    assert message["text"].startswith("[DRILL] Attention please. Flooding at 阳光小区")
    # A drill is the lowest priority, whatever its colour; a flood concerns the whole site.
    assert (message["priority"], message["priority_name"], message["drill"]) == (0, "drill",
                                                                                 True)
    assert message["zone"] == {"scope": "site", "site": "sunshine", "building": None}
    assert message["language"] == "en"
    assert "url" not in message["audio"]  # no public base configured: the file only
    assert_valid_wav(Path(message["audio"]["file"]))


async def test_without_a_tts_engine_the_text_goes_out_and_the_log_says_so_once(
        pg_dsn: str, db_schema: str, sink: LocalSink, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = loudspeakers(settings_for(sink.port),
                            (f"json://127.0.0.1:{sink.port}/broadcast",), tmp_path,
                            tts_command="no-such-tts-engine")
    settings = settings.model_copy(update={"devices": (*settings.devices, DeviceConfig(
        id="gas-8", type=DeviceType.GAS, site="sunshine", building="8"))})
    with caplog.at_level(logging.INFO, logger="alerting"):
        async with service(settings, pg_dsn, db_schema) as (run, db):
            await run.publish(gas(55.0, Severity.RED))
            await eventually(lambda: _sent(db, 1), "the first broadcast")
            await run.publish(gas(56.0, Severity.RED, device="gas-8"))
            await eventually(lambda: _sent(db, 2), "the second broadcast")
    messages = [json.loads(m.body) for m in sink.received("broadcast")]
    assert [m["zone"]["building"] for m in messages] == ["3", "8"]
    assert all("audio" not in m and m["text"].startswith("紧急通知") for m in messages)
    said = [r for r in caplog.records if "no text-to-speech engine" in r.getMessage()]
    assert len(said) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("tts_engine")
async def test_console_serves_the_audio_file_by_name_only(tmp_path: Path) -> None:
    settings = Settings(alerting=AlertingSettings(
        broadcast=BroadcastSettings(audio_dir=tmp_path)))
    name = "0123456789abcdef0123456789abcdef.wav"
    process = await asyncio.create_subprocess_exec(
        "espeak-ng", "-v", "cmn", "-w", str(tmp_path / name), "测试")
    assert await process.wait() == 0
    (tmp_path / "secret.txt").write_text("not for the public")

    class Context:
        def __init__(self) -> None:
            self.settings = settings

    app = Starlette(routes=public_routes(lambda request: Context()))  # type: ignore[arg-type,return-value]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://console") as client:
        found = await client.get(f"/broadcast/audio/{name}")
        assert found.status_code == 200 and found.content[:4] == b"RIFF"
        assert found.headers["content-type"] == "audio/wav"
        for bad in ("secret.txt", "..%2Fsecret.txt", "ffffffffffffffffffffffffffffffff.wav"):
            assert (await client.get(f"/broadcast/audio/{bad}")).status_code == 404
