"""Streaming resampling to the pipeline format, and fixed-size re-chunking."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.audio import PcmFormat, Rechunker, StreamResampler, to_mono

AMPLITUDE = 10_000


def tone(freq: float, seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.round(AMPLITUDE * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    return np.stack([left, right], axis=1).astype("<i2").tobytes()


def resample_in_chunks(pcm: bytes, src: PcmFormat, dst_rate: int, chunk_ms: int = 20) -> bytes:
    resampler = StreamResampler(src, dst_rate)
    size = src.bytes_for_ms(chunk_ms)
    out = [resampler.process(pcm[i : i + size]) for i in range(0, len(pcm), size)]
    out.append(resampler.flush())
    return b"".join(out)


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spectrum)])


SRC = PcmFormat(48_000, 2)


@pytest.mark.parametrize("seconds", [1.0, 2.37])
def test_output_duration_matches_input(seconds):
    left = tone(440, seconds, 48_000)
    out = samples(resample_in_chunks(stereo(left, left), SRC, 16_000))
    expected = seconds * 16_000
    assert abs(len(out) - expected) <= 16 * 3, (len(out), expected)  # within 3 ms


def test_tone_keeps_its_frequency_and_level():
    left = tone(440, 1.0, 48_000)
    out = samples(resample_in_chunks(stereo(left, left), SRC, 16_000))
    steady = out[800:-800]  # skip the filter's edges
    assert peak_frequency(steady, 16_000) == pytest.approx(440, abs=2)
    assert rms(steady) == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.05)


def test_tone_is_continuous_across_chunk_boundaries():
    left = tone(440, 1.0, 48_000)
    out = samples(resample_in_chunks(stereo(left, left), SRC, 16_000)).astype(np.float64)
    steady = out[800:-800]
    # A pure 440 Hz tone at 16 kHz changes by at most 2*pi*440/16000*A per sample; a click
    # or a dropped/repeated block at a 20 ms boundary would jump far more.
    max_step = 2 * np.pi * 440 / 16_000 * AMPLITUDE
    assert np.max(np.abs(np.diff(steady))) < 1.1 * max_step


@pytest.mark.parametrize("tone_side", ["left", "right"])
def test_channels_are_averaged(tone_side):
    sig = tone(440, 1.0, 48_000)
    silence = np.zeros_like(sig)
    pcm = stereo(sig, silence) if tone_side == "left" else stereo(silence, sig)
    steady = samples(resample_in_chunks(pcm, SRC, 16_000))[800:-800]
    assert peak_frequency(steady, 16_000) == pytest.approx(440, abs=2)
    assert rms(steady) == pytest.approx(AMPLITUDE / 2 / np.sqrt(2), rel=0.05)


def test_to_mono_averages_interleaved_channels():
    interleaved = np.array([100, 300, -200, -400, 32767, 32767], dtype=np.int16)
    assert to_mono(interleaved, 2).tolist() == [200, -300, 32767]
    assert to_mono(interleaved, 1) is interleaved


def test_pipeline_format_passes_through_unchanged():
    resampler = StreamResampler(PcmFormat(16_000, 1), 16_000)
    pcm = tone(440, 0.02, 16_000).tobytes()
    odd = b"\x01\x02\x03"  # not even a whole sample: passthrough does not touch the bytes
    assert resampler.process(pcm) == pcm
    assert resampler.process(odd) == odd
    assert resampler.flush() == b""


def test_stereo_at_pipeline_rate_is_only_mixed_down():
    sig = tone(440, 0.1, 16_000)
    out = StreamResampler(PcmFormat(16_000, 2), 16_000).process(stereo(sig, sig))
    assert samples(out).tolist() == sig.tolist()


def test_upsampling_for_output_keeps_duration_and_frequency():
    sig = tone(440, 1.0, 16_000).tobytes()
    out = samples(resample_in_chunks(sig, PcmFormat(16_000, 1), 24_000))
    assert abs(len(out) - 24_000) <= 24 * 3
    assert peak_frequency(out[1200:-1200], 24_000) == pytest.approx(440, abs=2)


def test_rechunker_yields_exact_chunks_and_keeps_remainder():
    data = bytes(range(256)) * 20  # 5120 bytes of a recognisable pattern
    chunker = Rechunker(1024)
    assert chunker.push(data[:300]) == []
    first = chunker.push(data[300:1300])
    assert first == [data[:1024]]
    rest = chunker.push(data[1300:5000])
    assert [len(c) for c in rest] == [1024] * 3
    assert b"".join(first + rest) == data[: 4 * 1024]
    assert chunker.flush() == data[4096:5000]
    assert chunker.flush() == b""


def test_rechunker_exact_multiple_leaves_nothing():
    chunker = Rechunker(4)
    assert chunker.push(b"abcdefgh") == [b"abcd", b"efgh"]
    assert chunker.flush() == b""
    assert chunker.push(b"xy") == []
    assert chunker.push(b"z") == []
    assert chunker.push(b"w!") == [b"xyzw"]
    assert chunker.flush() == b"!"
