"""The loudspeakers' audio clip: the spoken text rendered to WAV by a local TTS engine.

espeak-ng (Debian package ``espeak-ng``, installed by ``scripts/services.sh install``)
speaks Mandarin (voice ``cmn``) and English offline. One clip per distinct text and
voice, named by its hash and kept in PostgreSQL (``alerting.audio_store``), where the
console serves it at ``/broadcast/audio/{name}`` whatever host either runs on; a retried
or repeated broadcast, from this worker or another, reuses it. Only the ``audio_keep``
most recently used clips stay. Without the engine the broadcast goes out as text (the
controller may have its own TTS) and the service says so once at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import re
import shutil
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from alerting.audio_store import reuse_clip, save_clip
from alerting.models import Language
from config.settings import BroadcastSettings

__all__ = ["AUDIO_NAME", "AudioClip", "SpeechSynthesizer", "audio_name", "find_speech",
           "wav_duration_s"]

log = logging.getLogger(__name__)

AUDIO_NAME = re.compile(r"^[0-9a-f]{32}\.wav$")
_PARALLEL = 2  # renders at once: each is a short CPU burst on a 2-core box
_DB_TIMEOUT_S = 10.0  # a broadcast goes out as text rather than wait on the database
# Said, not shown: the brackets of 【演练】/【守望】 mean nothing spoken.
_SPOKEN_MARKS = (("【演练】", "演练。"), ("[DRILL] ", "Drill. "), ("【", ""), ("】", "，"))

Pool = AsyncConnectionPool[AsyncConnection[Any]]  # Any: tuple rows


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioClip:
    name: str  # in the console at /broadcast/audio/{name}
    url: str  # "" when no public base URL is configured
    duration_s: float

    def describe(self) -> dict[str, object]:
        found: dict[str, object] = {"file": self.name, "format": "wav",
                                    "duration_s": round(self.duration_s, 2)}
        if self.url:
            found["url"] = self.url
        return found


def wav_duration_s(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav), "rb") as clip:
        return clip.getnframes() / float(clip.getframerate())


def _spoken(text: str) -> str:
    """
    >>> _spoken("【演练】紧急通知：3号楼发生燃气泄漏。")
    '演练。紧急通知：3号楼发生燃气泄漏。'
    """
    for shown, said in _SPOKEN_MARKS:
        text = text.replace(shown, said)
    return text


def audio_name(voice: str, spoken: str) -> str:
    """The clip's name: the same for the same voice and words, on every worker."""
    return hashlib.sha256(f"{voice}\0{spoken}".encode()).hexdigest()[:32] + ".wav"


class SpeechSynthesizer:
    """Renders text with an espeak-ng compatible command line (``-v VOICE -w FILE --stdin``)
    and keeps the clip in the database."""

    def __init__(self, program: str, settings: BroadcastSettings) -> None:
        self._program = program
        self._settings = settings
        self._voices: dict[Language, str] = {"zh": settings.voice_zh, "en": settings.voice_en}
        self._parallel = asyncio.Semaphore(_PARALLEL)
        self._failing = False  # log a broken engine or database once, not per broadcast

    async def render(self, pool: Pool, text: str, language: Language, *,
                     now: float) -> AudioClip | None:
        """The stored clip for ``text``, or None when the engine or the database failed
        (logged)."""
        voice = self._voices[language]
        spoken = _spoken(text)
        name = audio_name(voice, spoken)
        async with self._parallel:
            try:
                duration = await self._stored(pool, name, now)
            except (psycopg.Error, TimeoutError) as err:
                self._failed("broadcast audio not read from the database, "
                             "broadcasting text only: %r", err)
                return None
            if duration is None:
                try:
                    wav = await self._run(spoken, voice)
                    duration = wav_duration_s(wav)
                except (OSError, wave.Error, TimeoutError, EOFError) as err:
                    self._failed("text-to-speech failed (%s -v %s), broadcasting "
                                 "text only: %r", self._program, voice, err)
                    return None
                try:
                    await self._save(pool, name, wav, duration, now)
                except (psycopg.Error, TimeoutError) as err:
                    self._failed("broadcast audio not stored, broadcasting text "
                                 "only: %r", err)
                    return None
        if self._failing:
            log.info("broadcast audio works again")
            self._failing = False
        base = self._settings.audio_url_base.rstrip("/")
        return AudioClip(name=name, url=f"{base}/{name}" if base else "", duration_s=duration)

    async def _stored(self, pool: Pool, name: str, now: float) -> float | None:
        async with (asyncio.timeout(_DB_TIMEOUT_S),
                    pool.connection(timeout=_DB_TIMEOUT_S) as conn):
            return await reuse_clip(conn, name, now)

    async def _save(self, pool: Pool, name: str, wav: bytes, duration_s: float,
                    now: float) -> None:
        async with (asyncio.timeout(_DB_TIMEOUT_S),
                    pool.connection(timeout=_DB_TIMEOUT_S) as conn):
            await save_clip(conn, name, wav, duration_s, now=now,
                            keep=self._settings.audio_keep)

    def _failed(self, message: str, *args: object) -> None:
        if not self._failing:
            log.error(message, *args)
        self._failing = True

    async def _run(self, spoken: str, voice: str) -> bytes:
        # A file, not --stdout: a WAV written to a pipe cannot have its sizes filled in.
        with tempfile.TemporaryDirectory(prefix="shouwang-tts-") as folder:
            path = Path(folder) / "clip.wav"
            process = await asyncio.create_subprocess_exec(
                self._program, "-v", voice, "-w", str(path), "--stdin",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE)
            try:
                async with asyncio.timeout(self._settings.tts_timeout_s):
                    _, errors = await process.communicate(spoken.encode())
            except TimeoutError:
                process.kill()
                await process.wait()
                raise
            if process.returncode != 0:
                raise OSError(f"exit status {process.returncode}: "
                              f"{errors.decode(errors='replace').strip()[:200]}")
            return await asyncio.to_thread(path.read_bytes)


def find_speech(settings: BroadcastSettings, *, announce: bool = True) -> SpeechSynthesizer | None:
    """The configured engine if it is installed; else None, said once in the log."""
    if announce and settings.audio_dir is not None:
        log.warning("broadcast.audio_dir is no longer used: the audio clips are kept in "
                    "the database and served by the console from there")
    program = shutil.which(settings.tts_command) if settings.tts_command else None
    if program is None:
        if announce:
            log.info("no text-to-speech engine (%r not found): broadcasts carry text only",
                     settings.tts_command)
        return None
    return SpeechSynthesizer(program, settings)
