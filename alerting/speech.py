"""The loudspeakers' audio file: the spoken text rendered to WAV by a local TTS engine.

espeak-ng (Debian package ``espeak-ng``, installed by ``scripts/services.sh install``)
speaks Mandarin (voice ``cmn``) and English offline. One file per distinct text and
voice, named by its hash, so a retried or repeated broadcast reuses it; only the newest
``audio_keep`` files stay on disk. Without the engine the broadcast goes out as text
(the controller may have its own TTS) and the service says so once at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

from alerting.models import Language
from config.settings import BroadcastSettings

__all__ = ["AUDIO_NAME", "AudioClip", "SpeechSynthesizer", "audio_dir", "find_speech",
           "wav_duration_s"]

log = logging.getLogger(__name__)

AUDIO_NAME = re.compile(r"^[0-9a-f]{32}\.wav$")
_PARALLEL = 2  # renders at once: each is a short CPU burst on a 2-core box
# Said, not shown: the brackets of 【演练】/【守望】 mean nothing spoken.
_SPOKEN_MARKS = (("【演练】", "演练。"), ("[DRILL] ", "Drill. "), ("【", ""), ("】", "，"))


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioClip:
    path: Path
    url: str  # "" when no public base URL is configured
    duration_s: float

    def describe(self) -> dict[str, object]:
        found: dict[str, object] = {"file": str(self.path), "format": "wav",
                                    "duration_s": round(self.duration_s, 2)}
        if self.url:
            found["url"] = self.url
        return found


def audio_dir(settings: BroadcastSettings) -> Path:
    return settings.audio_dir or Path(tempfile.gettempdir()) / "shouwang-broadcast-audio"


def wav_duration_s(path: Path) -> float:
    with wave.open(str(path), "rb") as clip:
        return clip.getnframes() / float(clip.getframerate())


def _spoken(text: str) -> str:
    """
    >>> _spoken("【演练】紧急通知：3号楼发生燃气泄漏。")
    '演练。紧急通知：3号楼发生燃气泄漏。'
    """
    for shown, said in _SPOKEN_MARKS:
        text = text.replace(shown, said)
    return text


class SpeechSynthesizer:
    """Renders text with an espeak-ng compatible command line (``-v VOICE -w FILE --stdin``)."""

    def __init__(self, program: str, settings: BroadcastSettings) -> None:
        self._program = program
        self._settings = settings
        self._dir = audio_dir(settings)
        self._voices: dict[Language, str] = {"zh": settings.voice_zh, "en": settings.voice_en}
        self._parallel = asyncio.Semaphore(_PARALLEL)
        self._failing = False  # log a broken engine once, not per broadcast

    async def render(self, text: str, language: Language) -> AudioClip | None:
        """The clip for ``text``, or None when the engine failed (logged)."""
        voice = self._voices[language]
        spoken = _spoken(text)
        name = hashlib.sha256(f"{voice}\0{spoken}".encode()).hexdigest()[:32] + ".wav"
        path = self._dir / name
        async with self._parallel:
            try:
                if path.exists():
                    os.utime(path)  # newest again: pruning keeps it
                else:
                    await self._run(spoken, voice, path)
                    await asyncio.to_thread(self._prune)
                duration = await asyncio.to_thread(wav_duration_s, path)
            except (OSError, wave.Error, TimeoutError, EOFError) as err:
                if not self._failing:
                    log.error("text-to-speech failed (%s -v %s), broadcasting text only: %s",
                              self._program, voice, err)
                self._failing = True
                return None
        if self._failing:
            log.info("text-to-speech works again")
            self._failing = False
        base = self._settings.audio_url_base.rstrip("/")
        return AudioClip(path=path, url=f"{base}/{name}" if base else "", duration_s=duration)

    async def _run(self, spoken: str, voice: str, path: Path) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        process = await asyncio.create_subprocess_exec(
            self._program, "-v", voice, "-w", str(partial), "--stdin",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(self._settings.tts_timeout_s):
                _, errors = await process.communicate(spoken.encode())
        except TimeoutError:
            process.kill()
            await process.wait()
            partial.unlink(missing_ok=True)
            raise
        if process.returncode != 0:
            partial.unlink(missing_ok=True)
            raise OSError(f"exit status {process.returncode}: "
                          f"{errors.decode(errors='replace').strip()[:200]}")
        os.replace(partial, path)  # whole or absent: a reader never sees half a file

    def _prune(self) -> None:
        clips: list[tuple[float, Path]] = []
        for path in self._dir.iterdir():
            if AUDIO_NAME.match(path.name):
                with contextlib.suppress(FileNotFoundError):  # another process pruned it
                    clips.append((path.stat().st_mtime, path))
        clips.sort(reverse=True)
        for _, old in clips[self._settings.audio_keep:]:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()


def find_speech(settings: BroadcastSettings, *, announce: bool = True) -> SpeechSynthesizer | None:
    """The configured engine if it is installed; else None, said once in the log."""
    program = shutil.which(settings.tts_command) if settings.tts_command else None
    if program is None:
        if announce:
            log.info("no text-to-speech engine (%r not found): broadcasts carry text only",
                     settings.tts_command)
        return None
    return SpeechSynthesizer(program, settings)
