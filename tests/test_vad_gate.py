"""The VAD's quiet gate: silence and a line's steady noise skip the model, and speech is
segmented as without it.

The gate only pays off if it never changes what the caller sees: the same speech_started /
speech_stopped offsets and the same utterance audio (on a noisy line, within one window), with
the model run on far fewer windows.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.audio import PcmFormat
from pipeline.events import EventSink
from pipeline.frames import UserSpeech
from pipeline.operator import Operator
from pipeline.operators.vad import VadOperator
from pipeline.silero import SileroBatcher
from pipeline.vad import WINDOW_BYTES, VadParams
from pipeline.vad_gate import (
    NOISE_REFRESH,
    NOISE_WINDOWS,
    QuietGate,
    Skip,
    mean_square,
    mean_square_floor,
)
from testing.speech import speech_pcm


def tone(dbfs: float, n: int = 512) -> bytes:
    """A sine window whose RMS level is `dbfs`."""
    amplitude = 32768 * 10 ** (dbfs / 20) * np.sqrt(2)
    samples = amplitude * np.sin(np.arange(n) * 2 * np.pi * 440 / 16_000)
    return samples.round().astype("<i2").tobytes()


def test_quiet_is_measured_as_rms_level():
    floor = mean_square_floor(-60.0)
    assert mean_square(bytes(WINDOW_BYTES)) == 0.0 < floor
    assert mean_square(tone(-66.0)) < floor < mean_square(tone(-54.0))
    assert mean_square(tone(-40.0)) == pytest.approx(mean_square_floor(-40.0), rel=0.01)
    assert mean_square_floor(None) < 0, "no floor: nothing is below it"


def noise(dbfs: float, n: int, seed: int = 1) -> bytes:
    """White noise whose RMS level is `dbfs`, `n` samples."""
    samples = np.random.default_rng(seed).standard_normal(n) * 32768 * 10 ** (dbfs / 20)
    return samples.round().clip(-32768, 32767).astype("<i2").tobytes()


def test_gate_skips_only_after_the_model_said_silence():
    gate = QuietGate(VadParams())  # release threshold 0.35
    silence = bytes(WINDOW_BYTES)
    assert gate.check(silence) is Skip.QUIET, "nothing heard yet: silence needs no model"
    assert gate.check(tone(-20.0)) is None, "loud windows always go to the model"
    gate.heard(0.97)
    assert gate.check(silence) is None, "the model is still ringing from speech: ask it"
    gate.heard(0.5)
    assert gate.check(silence) is None
    gate.heard(0.1)
    assert gate.check(silence) is Skip.QUIET
    assert gate.skipped == 2
    off = QuietGate(VadParams(silence_dbfs=None, noise_margin_db=None))
    assert off.check(silence) is None, "gate off"


def test_gate_learns_the_lines_noise_and_still_samples_it():
    gate = QuietGate(VadParams())  # -60 dBFS floor, 3 dB noise margin
    hiss = [noise(-45.0, 512, seed) for seed in range(40)]
    for window in hiss[:NOISE_WINDOWS]:  # above the floor: the model hears them
        assert gate.check(window) is None
        gate.heard(0.02)
    verdicts = []
    for window in hiss[NOISE_WINDOWS : NOISE_WINDOWS + 2 * NOISE_REFRESH]:
        verdicts.append(gate.check(window))
        if verdicts[-1] is None:
            gate.heard(0.02)
    skipped = [v is Skip.NOISE for v in verdicts]
    assert skipped == ([True] * (NOISE_REFRESH - 1) + [False]) * 2, "one in 8 to the model"
    assert gate.check(tone(-30.0)) is None, "speech-level windows rise above the noise"
    gate.heard(0.9)
    assert gate.check(hiss[-1]) is None, "after speech the model hears noise until it settles"
    gate.heard(0.05)
    assert gate.check(hiss[-1]) is Skip.NOISE
    unsure = QuietGate(VadParams())
    for window in hiss[:NOISE_WINDOWS]:
        unsure.check(window)
        unsure.heard(0.3)  # silence, but not clearly: not the line's noise
    assert unsure.check(hiss[-1]) is None
    off = QuietGate(VadParams(noise_margin_db=None))
    for window in hiss[:NOISE_WINDOWS]:
        off.check(window)
        off.heard(0.02)
    assert off.check(hiss[-1]) is None, "noise margin off: only quiet windows skip"


def test_a_loud_window_read_as_no_speech_does_not_lift_the_noise_level():
    """A knock or a cough the model reads as no speech must not teach the gate that the line
    is loud: speech a little above the hiss must still reach the model."""
    gate = QuietGate(VadParams())
    for seed in range(NOISE_WINDOWS):
        gate.check(noise(-45.0, 512, seed))
        gate.heard(0.02)
    gate.check(tone(-15.0))
    gate.heard(0.02)  # loud, yet read as no speech
    assert gate.check(noise(-38.0, 512, 99)) is None, "7 dB over the hiss: ask the model"
    assert gate.check(noise(-45.0, 512, 98)) is Skip.NOISE, "the hiss itself still skips"


class Collect(Operator[UserSpeech]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[UserSpeech] = []

    async def handle(self, item: UserSpeech) -> None:
        self.items.append(item)


async def segment(pcm: bytes, params: VadParams) -> tuple[list[tuple], list[bytes], int, int]:
    """Run the real VAD stage (real Silero) over `pcm` in 20 ms frames: the speech events it
    emitted, the utterances it cut, windows sent to the model, windows skipped."""
    batcher = SileroBatcher()
    events = EventSink(maxsize=10_000)
    collect = Collect()

    async def nothing() -> None:
        return None

    stage = VadOperator(
        batcher, params, PcmFormat(16_000), events=events,
        on_speech_start=nothing, downstream=collect,
    )  # fmt: skip
    try:
        for i in range(0, len(pcm), 640):
            await stage.handle(pcm[i : i + 640])
        await stage.finish()
    finally:
        await batcher.aclose()
    seen = []
    while not events.queue.empty():
        event = events.queue.get_nowait()
        assert event is not None
        kind = event.WhichOneof("event")
        if kind == "speech_started":
            seen.append((kind, event.speech_started.offset_ms))
        elif kind == "speech_stopped":
            stop = event.speech_stopped
            seen.append((kind, stop.start_offset_ms, stop.end_offset_ms))
    while not collect.inbox.empty():
        item = collect.inbox.get_nowait()
        assert isinstance(item, UserSpeech)
        collect.items.append(item)
    return seen, [u.audio for u in collect.items], batcher.windows, stage.gate.skipped


def caller(gain: float, hiss_dbfs: float | None = None) -> bytes:
    """Two utterances with silence around and between them, at a gain (1: normal speech,
    0.05: a caller 26 dB quieter, whose softest windows are below the gate's level), over a
    line's white noise at `hiss_dbfs` if given."""
    first = speech_pcm("I want to order a large pepperoni pizza", 16_000, 1, 1500, 1500)
    second = speech_pcm("Could you book me a table for two?", 16_000, 1, 0, 2000)
    samples = np.frombuffer(first + second, dtype="<i2").astype(np.float32) * gain
    if hiss_dbfs is not None:
        samples += np.frombuffer(noise(hiss_dbfs, len(samples)), dtype="<i2")
    return samples.round().clip(-32768, 32767).astype("<i2").tobytes()


UNGATED = {"silence_dbfs": None, "noise_margin_db": None}


@pytest.mark.parametrize("gain", [1.0, 0.05])
def test_gate_leaves_segments_unchanged_and_skips_the_silence(gain):
    pcm = caller(gain)
    params = VadParams(stop_ms=600)
    gated = asyncio.run(segment(pcm, params))
    plain = asyncio.run(segment(pcm, params.model_copy(update=UNGATED)))
    events, audio, model_windows, skipped = gated
    assert [e[0] for e in events] == ["speech_started", "speech_stopped"] * 2
    assert [e[0] for e in plain[0]] == [e[0] for e in events]
    if gain == 1.0:  # speech at a normal level: identical, to the sample
        assert events == plain[0], "the caller sees the same speech events"
        assert audio == plain[1], "and speech-to-text gets the same utterances"
    else:  # windows inside the quiet caller's words fall below the gate: within one window
        for ours, theirs in zip(events, plain[0], strict=True):
            assert all(abs(a - b) <= 32 for a, b in zip(ours[1:], theirs[1:], strict=True))
        for got, want in zip(audio, plain[1], strict=True):
            assert abs(len(got) - len(want)) <= WINDOW_BYTES
    assert plain[3] == 0
    total = len(pcm) // WINDOW_BYTES
    assert model_windows + skipped == total == plain[2]
    assert skipped > total * 0.4, f"silence should skip the model: {skipped} of {total}"


@pytest.mark.parametrize(("gain", "hiss_dbfs"), [(1.0, -50.0), (1.0, -40.0), (0.3, -50.0)])
def test_noise_gate_segments_a_noisy_line_within_a_window(gain, hiss_dbfs):
    """A caller on a line that is never quiet (and a softer one): the same turns, each edge
    within one window, and the model spared most of the noise between them."""
    pcm = caller(gain, hiss_dbfs)
    params = VadParams(stop_ms=600)
    events, audio, model_windows, skipped = asyncio.run(segment(pcm, params))
    plain = asyncio.run(segment(pcm, params.model_copy(update=UNGATED)))
    only_quiet = asyncio.run(segment(pcm, params.model_copy(update={"noise_margin_db": None})))
    assert [e[0] for e in plain[0]] == ["speech_started", "speech_stopped"] * 2
    assert [e[0] for e in events] == [e[0] for e in plain[0]]
    for ours, theirs in zip(events, plain[0], strict=True):
        assert all(abs(a - b) <= 32 for a, b in zip(ours[1:], theirs[1:], strict=True))
    for got, want in zip(audio, plain[1], strict=True):
        assert abs(len(got) - len(want)) <= WINDOW_BYTES
    total = len(pcm) // WINDOW_BYTES
    assert only_quiet[3] == 0, "the noise is above the quiet level: without the margin, no skips"
    assert model_windows + skipped == total
    assert skipped > total * 0.35, f"the line's noise should skip the model: {skipped} of {total}"


def test_a_burst_on_a_noisy_line_leaves_the_next_turn_as_it_was():
    """A loud 64 ms knock a second before the caller speaks, on a hissing line: the turn
    starts and ends where it does without the gate, to within one window."""
    pcm = bytearray(caller(1.0, -50.0))
    at = (1500 - 1000) * 32  # bytes: 1 s before the first utterance's speech
    pcm[at : at + 2048] = tone(-10.0, 1024)
    params = VadParams(stop_ms=600)
    events, audio, _, _ = asyncio.run(segment(bytes(pcm), params))
    plain = asyncio.run(segment(bytes(pcm), params.model_copy(update=UNGATED)))
    assert [e[0] for e in events] == [e[0] for e in plain[0]]
    for ours, theirs in zip(events, plain[0], strict=True):
        assert all(abs(a - b) <= 32 for a, b in zip(ours[1:], theirs[1:], strict=True))
    for got, want in zip(audio, plain[1], strict=True):
        assert abs(len(got) - len(want)) <= WINDOW_BYTES


def test_noise_alone_starts_no_turn():
    pcm = noise(-40.0, 16_000 * 8)
    events, audio, model_windows, skipped = asyncio.run(segment(pcm, VadParams()))
    assert events == [] and audio == []
    assert skipped > (model_windows + skipped) * 0.7
