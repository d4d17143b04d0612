"""The loudspeakers' audio clips in PostgreSQL (real database, real espeak-ng): rendered
once per text and voice, reused by a retry or another worker, pruned to the
``audio_keep`` most recently used, and served by the console app from the table, with no
directory shared between the alerting service and the console.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerting.audio_store import load_clip, save_clip
from alerting.speech import AUDIO_NAME, SpeechSynthesizer, find_speech, wav_duration_s
from config.settings import BroadcastSettings, DatabaseSettings, Settings
from console import create_app
from shouwang.bus import MemoryBus
from tests.integration.console_app import asgi_client

pytestmark = pytest.mark.integration

Pool = AsyncConnectionPool[AsyncConnection[Any]]  # Any: tuple rows
WARNING = "【演练】紧急通知：三号楼发生燃气泄漏，请立即撤离。"


@pytest.fixture
async def pool(pg_dsn: str, db_schema: str) -> AsyncIterator[Pool]:
    opened: Pool = AsyncConnectionPool(
        pg_dsn, open=False, min_size=1, max_size=2,
        kwargs={"autocommit": True, "options": f"-c search_path={db_schema}"})
    await opened.open(wait=True, timeout=30)
    try:
        yield opened
    finally:
        await opened.close()


async def stored(pool: Pool) -> list[tuple[str, float, float, float]]:
    """(name, duration, created, used) of every stored clip, most recently used first."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT name, duration_s, extract(epoch FROM created_at)::float8, "
            "extract(epoch FROM used_at)::float8 FROM broadcast_audio "
            "ORDER BY used_at DESC")
        return [(str(n), float(d), float(c), float(u)) for n, d, c, u in await cur.fetchall()]


def console_settings(tmp_path: Path) -> Settings:
    """The console's own settings: nothing of alerting's, its data (first admin) in tmp."""
    return Settings(database=DatabaseSettings(data_dir=tmp_path / "pg"))


def valid_wav(data: bytes) -> float:
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE", "not a RIFF/WAVE file"
    duration = wav_duration_s(data)
    assert duration > 0.5  # a spoken warning, not an empty file
    return duration


@pytest.mark.usefixtures("tts_engine")
async def test_a_clip_is_stored_once_and_a_second_worker_reuses_it(pool: Pool) -> None:
    speech = find_speech(BroadcastSettings(audio_keep=5))
    assert speech is not None
    first = await speech.render(pool, WARNING, "zh", now=1000.0)
    assert first is not None and AUDIO_NAME.match(first.name)
    assert first.describe() == {"file": first.name, "format": "wav",
                                "duration_s": round(first.duration_s, 2)}
    async with pool.connection() as conn:
        wav = await load_clip(conn, first.name)
    assert wav is not None and valid_wav(wav) == first.duration_s
    # Another worker whose engine would fail: the stored clip is used, nothing rendered.
    broken = shutil.which("false")
    assert broken is not None
    other = SpeechSynthesizer(broken, BroadcastSettings(
        audio_keep=5, audio_url_base="http://console.example/broadcast/audio/"))
    again = await other.render(pool, WARNING, "zh", now=1010.0)
    assert again is not None and again.name == first.name
    assert again.duration_s == first.duration_s
    assert again.url == f"http://console.example/broadcast/audio/{first.name}"
    assert await stored(pool) == [(first.name, first.duration_s, 1000.0, 1010.0)]


@pytest.mark.usefixtures("tts_engine")
async def test_only_the_most_recently_used_clips_are_kept(pool: Pool) -> None:
    speech = find_speech(BroadcastSettings(audio_keep=2))
    assert speech is not None
    texts = ("Gas leak in building three.", "Flooding in the garage.", "Fire on floor five.")
    gas = await speech.render(pool, texts[0], "en", now=1.0)
    flood = await speech.render(pool, texts[1], "en", now=2.0)
    assert gas is not None and flood is not None
    assert await speech.render(pool, texts[0], "en", now=3.0) is not None  # used again
    fire = await speech.render(pool, texts[2], "en", now=4.0)
    assert fire is not None
    # The flood clip was the least recently used: it went, the older gas clip stayed.
    assert [row[0] for row in await stored(pool)] == [fire.name, gas.name]
    async with pool.connection() as conn:
        assert await load_clip(conn, flood.name) is None


async def test_a_failing_engine_gives_text_only_and_is_logged_once(
        pool: Pool, caplog: pytest.LogCaptureFixture) -> None:
    broken = shutil.which("false")
    assert broken is not None
    speech = SpeechSynthesizer(broken, BroadcastSettings())
    with caplog.at_level(logging.ERROR, logger="alerting.speech"):
        results = [await speech.render(pool, f"测试{n}", "zh", now=1.0) for n in range(3)]
    assert results == [None, None, None]
    assert len([r for r in caplog.records if "text-to-speech failed" in r.getMessage()]) == 1
    assert await stored(pool) == []


async def test_a_hanging_engine_is_cut_at_its_timeout(pool: Pool, tmp_path: Path) -> None:
    sleeper = tmp_path / "hang.sh"
    sleeper.write_text("#!/bin/sh\nexec sleep 30\n")
    sleeper.chmod(0o755)
    speech = SpeechSynthesizer(str(sleeper), BroadcastSettings(tts_timeout_s=0.3))
    assert await asyncio.wait_for(speech.render(pool, "测试", "zh", now=1.0), 10) is None
    assert await stored(pool) == []


@pytest.mark.usefixtures("tts_engine")
async def test_without_the_table_the_broadcast_is_text_only_and_logged_once(
        pg_dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    # A database the clips cannot go to (here: a schema never migrated).
    nowhere: Pool = AsyncConnectionPool(
        pg_dsn, open=False, min_size=1, max_size=1,
        kwargs={"autocommit": True, "options": "-c search_path=shouwang_no_such_schema"})
    await nowhere.open(wait=True, timeout=30)
    try:
        speech = find_speech(BroadcastSettings())
        assert speech is not None
        with caplog.at_level(logging.ERROR, logger="alerting.speech"):
            results = [await speech.render(nowhere, WARNING, "zh", now=1.0)
                       for _ in range(2)]
    finally:
        await nowhere.close()
    assert results == [None, None]
    said = [r.getMessage() for r in caplog.records if r.name == "alerting.speech"]
    assert len(said) == 1 and "broadcasting text only" in said[0]


def test_a_configured_audio_dir_is_said_to_be_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alerting.speech"):
        find_speech(BroadcastSettings(audio_dir=tmp_path))
    assert any("audio_dir is no longer used" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("tts_engine")
async def test_the_console_serves_a_stored_clip_by_name_only(
        pool: Pool, pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    speech = find_speech(BroadcastSettings())
    assert speech is not None
    clip = await speech.render(pool, WARNING, "zh", now=1.0)
    assert clip is not None
    async with MemoryBus() as bus:
        app = create_app(console_settings(tmp_path), pg_dsn, bus, schema=db_schema)
        async with asgi_client(app) as web:
            found = await web.get(f"/broadcast/audio/{clip.name}")
            assert found.status_code == 200
            assert found.headers["content-type"] == "audio/wav"
            assert int(found.headers["content-length"]) == len(found.content)
            assert "immutable" in found.headers["cache-control"]
            with wave.open(io.BytesIO(found.content), "rb") as heard:
                assert heard.getnchannels() == 1
            assert valid_wav(found.content) == clip.duration_s
            again = await web.get(f"/broadcast/audio/{clip.name}",
                                  headers={"If-None-Match": found.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            for bad in ("secret.txt", "..%2Fsecret.txt", f"{clip.name[:-4].upper()}.wav",
                        "ffffffffffffffffffffffffffffffff.wav", f"{clip.name}x"):
                missing = await web.get(f"/broadcast/audio/{bad}")
                assert missing.status_code == 404, bad


@pytest.mark.usefixtures("tts_engine")
async def test_store_and_fetch_of_a_one_minute_clip_stay_quick(
        pool: Pool, pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    """A long warning (well over half a minute of speech, more than a broadcast says)."""
    speech = find_speech(BroadcastSettings())
    assert speech is not None
    text = "紧急通知：阳光小区3号楼2单元5层502室发生燃气泄漏，请立即关闭燃气阀门，" \
           "不要开关电器，不要使用明火，迅速撤离到室外空旷处。" * 4
    started = time.perf_counter()
    clip = await speech.render(pool, text, "zh", now=1.0)
    rendered_s = time.perf_counter() - started
    assert clip is not None and clip.duration_s > 30
    async with MemoryBus() as bus:
        app = create_app(console_settings(tmp_path), pg_dsn, bus, schema=db_schema)
        async with asgi_client(app) as web:
            started = time.perf_counter()
            found = await web.get(f"/broadcast/audio/{clip.name}")
            fetched_s = time.perf_counter() - started
    assert found.status_code == 200 and valid_wav(found.content) == clip.duration_s
    assert len(found.content) > 1_000_000
    # Generous bounds (a shared 2-core box); they catch a stall, not a slow machine.
    assert rendered_s < 60 and fetched_s < 10


def tone_wav(seconds: float) -> bytes:
    """A stored clip without the TTS engine: every byte differs from its neighbours, so a
    slice from the wrong offset cannot pass for the right one."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(22050)
        frames = int(22050 * seconds)
        writer.writeframes(bytes((n * 7 + n // 256) % 256 for n in range(frames * 2)))
    return out.getvalue()


async def test_the_console_serves_byte_ranges_of_a_clip(
        pool: Pool, pg_dsn: str, db_schema: str, tmp_path: Path) -> None:
    name = "0123456789abcdef0123456789abcdef.wav"
    wav = tone_wav(3.0)
    total = len(wav)
    async with pool.connection() as conn:
        await save_clip(conn, name, wav, 3.0, now=1.0, keep=5)
    url = f"/broadcast/audio/{name}"
    etag = '"0123456789abcdef0123456789abcdef"'
    async with MemoryBus() as bus:
        app = create_app(console_settings(tmp_path), pg_dsn, bus, schema=db_schema)
        async with asgi_client(app) as web:
            whole = await web.get(url)
            assert whole.status_code == 200 and whole.content == wav
            assert whole.headers["accept-ranges"] == "bytes"
            assert whole.headers["etag"] == etag
            for asked, first, last in (("bytes=0-99", 0, 99),
                                       ("bytes=1000-2999", 1000, 2999),
                                       (f"bytes={total - 10}-{total + 500}", total - 10,
                                        total - 1),
                                       ("bytes=5000-", 5000, total - 1),
                                       ("bytes=-300", total - 300, total - 1),
                                       (f"bytes=-{total * 2}", 0, total - 1),
                                       ("Bytes = 7-7", 7, 7)):
                part = await web.get(url, headers={"Range": asked})
                assert part.status_code == 206, asked
                assert part.content == wav[first:last + 1], asked
                assert part.headers["content-range"] == f"bytes {first}-{last}/{total}"
                assert int(part.headers["content-length"]) == last - first + 1
                assert part.headers["content-type"] == "audio/wav"
                assert part.headers["etag"] == etag
            for asked in (f"bytes={total}-", f"bytes={total + 5}-{total + 9}", "bytes=-0"):
                refused = await web.get(url, headers={"Range": asked})
                assert refused.status_code == 416, asked
                assert refused.headers["content-range"] == f"bytes */{total}"
                assert refused.content == b""
            for ignored in ("bytes=0-1,5-9", "bytes=9-5", "bytes=-", "bytes=a-b",
                            "items=0-9", "bytes=0x10-20", "0-99"):
                full = await web.get(url, headers={"Range": ignored})
                assert full.status_code == 200, ignored
                assert full.content == wav and "content-range" not in full.headers
            # If-Range: the same clip resumes; any other validator gets the whole clip.
            resumed = await web.get(url, headers={"Range": "bytes=100-", "If-Range": etag})
            assert resumed.status_code == 206 and resumed.content == wav[100:]
            for other in ('"ffffffffffffffffffffffffffffffff"', f"W/{etag}",
                          "Wed, 21 Oct 2026 07:28:00 GMT"):
                restarted = await web.get(url, headers={"Range": "bytes=100-",
                                                        "If-Range": other})
                assert restarted.status_code == 200, other
                assert restarted.content == wav
            # HEAD: GET's status and headers, no body.
            head = await web.head(url)
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == total
            assert head.headers["accept-ranges"] == "bytes"
            head_part = await web.head(url, headers={"Range": "bytes=-300"})
            assert head_part.status_code == 206 and head_part.content == b""
            assert head_part.headers["content-range"] == \
                f"bytes {total - 300}-{total - 1}/{total}"
            assert int(head_part.headers["content-length"]) == 300
            head_refused = await web.head(url, headers={"Range": f"bytes={total}-"})
            assert head_refused.status_code == 416
            # A range of a clip that is not stored is still a 404.
            gone = await web.get("/broadcast/audio/ffffffffffffffffffffffffffffffff.wav",
                                 headers={"Range": "bytes=0-9"})
            assert gone.status_code == 404
