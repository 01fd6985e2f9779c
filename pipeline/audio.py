"""PCM helpers: format checks, channel mixing, streaming resampling and re-chunking.

Everything inside the pipeline is 16-bit little-endian PCM. The VAD and STT work at 16 kHz mono;
clients speak and listen at their own rates, so conversion happens once at each edge, with soxr
(a real band-limited resampler) rather than by dropping or repeating samples.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass

import numpy as np
import soxr

PIPELINE_RATE = 16_000
INPUT_RATES = (8_000, 16_000, 24_000, 48_000)
OUTPUT_RATES = INPUT_RATES
BYTES_PER_SAMPLE = 2


@dataclass(frozen=True)
class PcmFormat:
    """Linear 16-bit PCM at a rate, interleaved channels."""

    sample_rate: int
    channels: int = 1

    @property
    def frame_bytes(self) -> int:
        """Bytes in one sample of every channel."""
        return BYTES_PER_SAMPLE * self.channels

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / self.frame_bytes / self.sample_rate * 1000.0

    def bytes_for_ms(self, ms: float) -> int:
        return int(self.sample_rate * ms / 1000.0) * self.frame_bytes


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Average interleaved channels into one (int16 in, int16 out)."""
    if channels == 1:
        return samples
    mixed = samples.reshape(-1, channels).astype(np.int32).mean(axis=1)
    return mixed.astype(np.int16)


class StreamResampler:
    """Converts a stream of PCM chunks between rates (and to mono) without edge clicks.

    soxr keeps filter state between chunks, so chunk boundaries leave no artefacts. When rates
    and channels already match it passes bytes through untouched.
    """

    def __init__(self, src: PcmFormat, dst_rate: int) -> None:
        self.src = src
        self.dst_rate = dst_rate
        self._stream = (
            None
            if src.sample_rate == dst_rate
            else soxr.ResampleStream(src.sample_rate, dst_rate, 1, dtype="int16")
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if self._stream is None and self.src.channels == 1:
            return pcm
        samples = to_mono(np.frombuffer(pcm, dtype="<i2"), self.src.channels)
        if self._stream is None:
            return samples.tobytes()
        return self._stream.resample_chunk(samples, last=last).tobytes()

    def flush(self) -> bytes:
        """Drain the resampler's delay line at the end of a stream."""
        if self._stream is None:
            return b""
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()


class Rechunker:
    """Cuts a byte stream into fixed-size chunks; the remainder waits for more bytes."""

    def __init__(self, chunk_bytes: int) -> None:
        self.chunk_bytes = chunk_bytes
        self._buffer = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        n = len(self._buffer) // self.chunk_bytes * self.chunk_bytes
        if n == 0:
            return []
        out = [bytes(self._buffer[i : i + self.chunk_bytes]) for i in range(0, n, self.chunk_bytes)]
        del self._buffer[:n]
        return out

    def flush(self) -> bytes:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return rest


AGENT_CHUNK_MS = 100  # agent audio message size: small enough for a quick barge-in


class OutputChunker:
    """TTS PCM to fixed-size chunks in the client's format: resample, then cut.

    `finish` drains the resampler's delay line and returns the short remainder too, so the
    chunks add up to exactly the synthesized audio.
    """

    def __init__(self, src_rate: int, dst: PcmFormat, chunk_ms: float = AGENT_CHUNK_MS) -> None:
        self._resampler = StreamResampler(PcmFormat(src_rate), dst.sample_rate)
        self._chunker = Rechunker(dst.bytes_for_ms(chunk_ms))

    def push(self, pcm: bytes) -> list[bytes]:
        return self._chunker.push(self._resampler.process(pcm))

    def finish(self) -> list[bytes]:
        chunks = self._chunker.push(self._resampler.flush())
        rest = self._chunker.flush()
        return chunks + [rest] if rest else chunks


def wav_bytes(pcm: bytes, sample_rate: int, channels: int = 1) -> bytes:
    """Wrap PCM in a WAV container (what transcription APIs accept)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(BYTES_PER_SAMPLE)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def int16_to_float(pcm: bytes | np.ndarray) -> np.ndarray:
    samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
    return samples.astype(np.float32) / 32768.0
