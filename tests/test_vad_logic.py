"""VAD decisions and segment bookkeeping, driven by synthetic probabilities (no model)."""

from __future__ import annotations

import pydantic
import pytest

from pipeline.vad import (
    WINDOW_BYTES,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    Started,
    Stopped,
    VadParams,
    VadStateMachine,
)

SPEECH, QUIET = 0.9, 0.05

# start 3 windows, stop 5 windows, pre-roll 2 windows, pad 2 windows (a window is 32 ms).
PARAMS = VadParams(threshold=0.5, start_ms=96, stop_ms=160, pre_roll_ms=64, pad_ms=64)


def run(machine: VadStateMachine, probs: list[float]) -> list[tuple[int, Started | Stopped]]:
    """Feed probabilities; return (index of the window that produced it, event)."""
    events = []
    for prob in probs:
        index = machine.window
        event = machine.feed(prob)
        if event is not None:
            events.append((index, event))
    return events


def test_speech_must_last_start_ms_and_started_reports_first_speech_window():
    machine = VadStateMachine(PARAMS)
    events = run(machine, [QUIET] * 5 + [SPEECH] * 3)
    # Decided on the third speech window (index 7), but the speech began at window 5.
    assert events == [(7, Started(5))]


def test_blip_shorter_than_start_ms_is_ignored():
    machine = VadStateMachine(PARAMS)
    probs = [QUIET] * 4 + [SPEECH] * 2 + [QUIET] * 10 + [SPEECH] + [QUIET] * 3
    assert run(machine, probs) == []
    assert machine.finish() is None


def test_silence_must_last_stop_ms_before_stopped():
    machine = VadStateMachine(PARAMS)
    assert run(machine, [SPEECH] * 6) == [(2, Started(0))]
    assert run(machine, [QUIET] * 4) == []  # 4 of the 5 silent windows needed
    # The fifth silent window (index 10) stops; the segment ends after the last speech window.
    assert run(machine, [QUIET]) == [(10, Stopped(start_window=0, end_window=6))]


def test_short_pause_inside_speech_does_not_stop_it():
    machine = VadStateMachine(PARAMS)
    probs = [SPEECH] * 4 + [QUIET] * 4 + [SPEECH] * 3 + [QUIET] * 5
    assert run(machine, probs) == [(2, Started(0)), (15, Stopped(0, 11))]


def test_hysteresis_keeps_speaking_between_release_threshold_and_threshold():
    assert PARAMS.release_threshold == pytest.approx(0.35)
    middle = 0.4  # below threshold, above release_threshold
    machine = VadStateMachine(PARAMS)
    # Not enough to start speech on its own...
    assert run(machine, [middle] * 20) == []
    # ...but once speaking it counts as speech, however long it lasts.
    assert run(machine, [SPEECH] * 3) == [(22, Started(20))]
    assert run(machine, [middle] * 40) == []
    assert run(machine, [0.3] * 5) == [(67, Stopped(20, 63))]


def test_below_threshold_window_breaks_the_start_run():
    machine = VadStateMachine(PARAMS)
    # 0.4 is below threshold: while not yet speaking, it resets the start debounce.
    assert run(machine, [SPEECH, SPEECH, 0.4, SPEECH, SPEECH]) == []
    assert run(machine, [SPEECH]) == [(5, Started(3))]


def test_max_speech_forces_a_stop_and_speech_resumes_as_a_new_segment():
    params = VadParams(start_ms=96, stop_ms=160, max_speech_ms=1_000)  # 32 windows
    machine = VadStateMachine(params)
    events = run(machine, [SPEECH] * 40)
    assert events == [(2, Started(0)), (31, Stopped(0, 32)), (34, Started(32))]


def test_finish_closes_an_open_segment():
    machine = VadStateMachine(PARAMS)
    run(machine, [SPEECH] * 5 + [QUIET] * 2)  # speaking, then part way into the stop debounce
    assert machine.finish() == Stopped(0, 5)
    assert machine.finish() is None  # nothing open any more


def test_finish_when_quiet_or_starting_returns_none():
    machine = VadStateMachine(PARAMS)
    assert machine.finish() is None
    run(machine, [QUIET, SPEECH, SPEECH])  # still debouncing the start
    assert machine.finish() is None


def window(i: int) -> bytes:
    """A window whose every byte tells its index, so segment audio can be decoded."""
    return bytes([i % 256]) * WINDOW_BYTES


def window_indices(audio: bytes) -> list[int]:
    assert len(audio) % WINDOW_BYTES == 0
    chunks = [audio[i : i + WINDOW_BYTES] for i in range(0, len(audio), WINDOW_BYTES)]
    assert all(len(set(c)) == 1 for c in chunks)
    return [c[0] for c in chunks]


def segment(params: VadParams, probs: list[float], finish: bool = False) -> list:
    segmenter = SpeechSegmenter(params)
    events = []
    for i, prob in enumerate(probs):
        events += [(i, e) for e in segmenter.push(window(i), prob)]
    if finish:
        events += [("finish", e) for e in segmenter.finish()]
    return events


def test_segment_has_pre_roll_speech_and_pad_but_not_all_trailing_silence():
    probs = [QUIET] * 10 + [SPEECH] * 6 + [QUIET] * 8
    events = segment(PARAMS, probs)
    assert [(i, type(e)) for i, e in events] == [(12, SpeechStart), (20, SpeechEnd)]
    start, end = events[0][1], events[1][1]
    assert start.offset_ms == 10 * 32
    # Two windows of pre-roll (8, 9), speech (10-15), two windows of pad (16, 17).
    assert window_indices(end.audio) == list(range(8, 18))
    assert end.start_offset_ms == 8 * 32
    assert end.end_offset_ms == 16 * 32


def test_default_pre_roll_reaches_300_ms_back():
    params = VadParams()  # pre-roll 300 ms = 10 windows, start 200 ms = 7 windows
    probs = [QUIET] * 30 + [SPEECH] * 20 + [QUIET] * 19
    events = segment(params, probs)
    start, end = events[0][1], events[-1][1]
    assert start.offset_ms == 30 * 32
    indices = window_indices(end.audio)
    assert indices[0] == 20 and end.start_offset_ms == 20 * 32
    assert indices == list(range(20, 50 + 7))  # pad 200 ms = 7 windows
    assert end.end_offset_ms == 50 * 32


def test_segment_starting_before_pre_roll_is_available():
    # Speech from window 1: only one window of history exists for a two-window pre-roll.
    events = segment(PARAMS, [QUIET] + [SPEECH] * 4 + [QUIET] * 5)
    start, end = events[0][1], events[1][1]
    assert start == SpeechStart(offset_ms=32)
    assert window_indices(end.audio) == list(range(0, 7))
    assert end.start_offset_ms == 0 and end.end_offset_ms == 5 * 32


def test_segment_starting_at_first_window():
    events = segment(PARAMS, [SPEECH] * 4, finish=True)
    start, end = events[0][1], events[1][1]
    assert start == SpeechStart(offset_ms=0)
    assert events[1][0] == "finish"
    assert window_indices(end.audio) == [0, 1, 2, 3]
    assert end.start_offset_ms == 0 and end.end_offset_ms == 4 * 32


def test_finish_keeps_only_pad_of_the_trailing_silence():
    events = segment(PARAMS, [QUIET] * 3 + [SPEECH] * 4 + [QUIET] * 4, finish=True)
    end = events[-1][1]
    assert events[-1][0] == "finish"
    assert window_indices(end.audio) == list(range(1, 9))  # 1-2 pre-roll, 3-6 speech, 7-8 pad


def test_consecutive_segments_do_not_share_audio():
    params = VadParams(start_ms=96, stop_ms=160, pre_roll_ms=64, pad_ms=64, max_speech_ms=1_000)
    events = segment(params, [SPEECH] * 40, finish=True)
    ends = [e for _, e in events if isinstance(e, SpeechEnd)]
    assert [window_indices(e.audio) for e in ends] == [list(range(0, 32)), list(range(32, 40))]
    assert [(e.start_offset_ms, e.end_offset_ms) for e in ends] == [(0, 1024), (1024, 1280)]


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5])
def test_params_reject_threshold_outside_open_interval(threshold):
    with pytest.raises(pydantic.ValidationError):
        VadParams(threshold=threshold)


def test_params_reject_stop_ms_below_64():
    with pytest.raises(pydantic.ValidationError):
        VadParams(stop_ms=63)
    assert VadParams(stop_ms=64).stop_ms == 64


def test_settled_audio_is_the_final_segment_once_the_pad_is_heard():
    segmenter = SpeechSegmenter(PARAMS)  # stop 5 windows, pad 2
    probs = [QUIET] * 3 + [SPEECH] * 6 + [QUIET] * 5
    settled: list[tuple[int, bytes]] = []
    ends: list[SpeechEnd] = []
    for i, prob in enumerate(probs):
        events = segmenter.push(bytes([i]) * WINDOW_BYTES, prob)
        if (audio := segmenter.settled_audio()) is not None:
            settled.append((i, audio))
        ends += [e for e in events if isinstance(e, SpeechEnd)]
    assert len(ends) == 1
    # Offered once, on the second quiet window (the pad complete), three windows before the stop.
    assert [i for i, _ in settled] == [10]
    assert settled[0][1] == ends[0].audio


def test_settled_audio_is_offered_again_after_speech_resumes():
    segmenter = SpeechSegmenter(PARAMS)
    probs = [SPEECH] * 4 + [QUIET] * 3 + [SPEECH] * 2 + [QUIET] * 5
    offered, ends = [], []
    for i, prob in enumerate(probs):
        ends += [
            e for e in segmenter.push(bytes([i]) * WINDOW_BYTES, prob) if isinstance(e, SpeechEnd)
        ]
        if (audio := segmenter.settled_audio()) is not None:
            offered.append(audio)
    assert len(offered) == 2, "one per pause: the first pause was not the end"
    assert offered[0] != ends[0].audio
    assert offered[1] == ends[0].audio
    assert segmenter.settled_audio() is None, "nothing after the segment is closed"
