"""Spoken-audio helpers for tests and benchmarks: real speech from eSpeak NG, so no audio
fixtures are committed.

Results are cached because many tests ask for the same utterance in the same format.
"""

from __future__ import annotations

import functools
import wave
from os import PathLike

import numpy as np
import soxr

from pipeline.providers.espeak import EspeakSynthesizer

SAMPLE_WIDTH = 2  # int16


@functools.lru_cache(maxsize=1)
def _synth() -> EspeakSynthesizer:
    return EspeakSynthesizer()


@functools.lru_cache(maxsize=64)
def speech_pcm(
    text: str,
    sample_rate: int = 16000,
    channels: int = 1,
    lead_silence_ms: int = 300,
    tail_silence_ms: int = 1000,
) -> bytes:
    """`text` spoken as int16 little-endian interleaved PCM, padded with silence.

    The tail silence gives VADs something to detect end-of-speech on.
    """
    synth = _synth()
    mono = synth.synthesize(text)
    if sample_rate != synth.sample_rate:
        mono = soxr.resample(mono, synth.sample_rate, sample_rate)  # int16 in -> int16 out
    lead = np.zeros(sample_rate * lead_silence_ms // 1000, dtype=np.int16)
    tail = np.zeros(sample_rate * tail_silence_ms // 1000, dtype=np.int16)
    mono = np.concatenate([lead, mono.astype(np.int16, copy=False), tail])
    interleaved = np.repeat(mono[:, None], channels, axis=1)  # duplicate into every channel
    return interleaved.astype("<i2").tobytes()


def write_wav(path: str | PathLike, pcm: bytes, sample_rate: int, channels: int) -> None:
    """Write int16 PCM to a WAV file (handy for listening to what a test fed in)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


@functools.lru_cache(maxsize=64)
def _frames(pcm: bytes, sample_rate: int, channels: int, frame_ms: int) -> tuple[bytes, ...]:
    size = sample_rate * frame_ms // 1000 * channels * SAMPLE_WIDTH
    if size <= 0:
        raise ValueError(f"frame of {frame_ms} ms at {sample_rate} Hz is empty")
    if len(pcm) % (channels * SAMPLE_WIDTH):
        raise ValueError("pcm length is not a whole number of sample frames")
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1].ljust(size, b"\x00")
    return tuple(out)


def frames(pcm: bytes, sample_rate: int, channels: int, frame_ms: int = 20) -> list[bytes]:
    """Split PCM into `frame_ms` frames; the last one is zero-padded to full length."""
    return list(_frames(pcm, sample_rate, channels, frame_ms))
