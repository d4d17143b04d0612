"""Coverage-guided fuzzing of the decoder with atheris: a bounded local run, not part of CI.

    .venv/bin/pip install atheris
    .venv/bin/python -m tests.fuzz.atheris_decoder -atheris_runs=200000

Any exception escaping ``Decoder.decode``, or a result that is neither readings nor a
reject with a known reason, stops the run with the crashing input saved by libFuzzer.
"""

from __future__ import annotations

import sys

from tests.fuzz.test_decoder_fuzz import CHANNELS, DEVICES, _decode

__all__ = ["main"]

_TOPICS = [f"shouwang/v1/{d.site}/{d.id}/{c}" for d in DEVICES.values() for c in CHANNELS]


def _one_input(data: bytes) -> None:
    if not data:
        return
    # The first byte picks a real topic (or a fuzzed one); the rest is the payload.
    pick, payload = data[0], data[1:]
    if pick < 200:
        topic = _TOPICS[pick % len(_TOPICS)]
    else:
        head, _, payload = payload.partition(b"\x00")
        topic = head.decode("utf-8", "replace")
    _decode(topic, payload)


def main() -> None:
    import atheris  # optional: only this local harness needs it

    atheris.instrument_all()  # coverage feedback from the decoder, pydantic and the checks
    atheris.Setup(sys.argv, _one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
