"""The fake OpenAI server's audio: uploads read for transcription, speech bodies made up.

A fixed 220 Hz sine stands in for synthesized speech (its length is what tests reason about);
uploaded files are parsed as WAV where they are one, so tests can assert the format the
server sent.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass

from aiohttp import web

TTS_RATE = 24_000


@dataclass
class AudioInfo:
    """What was uploaded for transcription; WAV fields are None when it is not a WAV."""

    filename: str | None
    content_type: str | None
    size_bytes: int
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    pcm: bytes = b""


# 220 Hz at 24 kHz repeats exactly every 1200 samples (11 cycles): compute once, then tile.
_SINE_PERIOD = b"".join(
    round(9830 * math.sin(2 * math.pi * 220 * i / TTS_RATE)).to_bytes(2, "little", signed=True)
    for i in range(1200)
)  # amplitude 9830 ~= 0.3 * 32767


def sine_pcm(duration_s: float) -> bytes:
    """24 kHz mono int16 220 Hz sine of an exact length; tiling keeps it cheap for the loop."""
    nbytes = 2 * round(duration_s * TTS_RATE)
    reps = nbytes // len(_SINE_PERIOD) + 1
    return (_SINE_PERIOD * reps)[:nbytes]


def wav_bytes(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(TTS_RATE)
        w.writeframes(pcm)
    return out.getvalue()


def audio_info(filename: str | None, content_type: str | None, data: bytes) -> AudioInfo:
    info = AudioInfo(filename, content_type, len(data))
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            info.sample_rate, info.channels = w.getframerate(), w.getnchannels()
            info.duration_s = w.getnframes() / info.sample_rate
            info.pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ZeroDivisionError):  # not a (sane) WAV
        pass
    return info


async def parse_form(request: web.Request) -> tuple[dict, AudioInfo | None]:
    """Multipart form fields -> body dict; the ``file`` part -> AudioInfo."""
    form = await request.post()
    audio, body = None, {}
    for key in dict.fromkeys(form.keys()):
        values = form.getall(key)
        if isinstance(values[0], web.FileField):
            f = values[0]
            audio = audio_info(f.filename, f.content_type, f.file.read())
        else:  # repeated fields (arrays such as timestamp_granularities[]) become lists
            body[key] = values[0] if len(values) == 1 else values
    return body, audio
