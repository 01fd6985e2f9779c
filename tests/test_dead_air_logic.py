"""The dead-air rules as plain logic: made-up clocks, no asyncio, no server."""

from __future__ import annotations

import pytest

from pipeline.dead_air import PIPELINE, DeadAirDetector, DeadAirParams, Owed, Stall, Work, waited_on

PARAMS = DeadAirParams(reply_s=8.0, stage_s=5.0)


def test_nothing_owed_and_nothing_held_is_quiet():
    assert DeadAirDetector(PARAMS).check(1000.0, None, []) == []


def test_reply_within_its_time_is_quiet():
    detector = DeadAirDetector(PARAMS)
    assert detector.check(107.9, Owed(3, 100.0), [Work("chat", 3, 106.0)]) == []


def test_overdue_reply_names_the_stage_nearest_the_ear():
    detector = DeadAirDetector(PARAMS)
    work = [Work("chat", 3, 107.0), Work("tts", 3, 107.5)]
    assert detector.check(108.0, Owed(3, 100.0), work) == [Stall("reply", "tts", 3, 8.0)]


def test_overdue_reply_with_no_stage_holding_it_is_the_pipeline():
    detector = DeadAirDetector(PARAMS)
    stalls = detector.check(108.0, Owed(3, 100.0), [Work("tts", 2, 107.0)])  # another turn's
    assert stalls == [Stall("reply", PIPELINE, 3, 8.0)]


@pytest.mark.parametrize("stage", ["stt", "chat", "tts", "output"])
def test_a_stage_without_progress_is_stuck(stage):
    detector = DeadAirDetector(PARAMS)
    assert detector.check(104.9, None, [Work(stage, 1, 100.0)]) == []
    assert detector.check(105.0, None, [Work(stage, 1, 100.0)]) == [Stall("stage", stage, 1, 5.0)]


def test_progress_resets_the_stage_clock():
    """`since` is the last token or bytes: a slow but moving stream is not stuck."""
    detector = DeadAirDetector(PARAMS)
    for t in range(100, 130):
        assert detector.check(float(t), None, [Work("chat", 1, t - 4.0)]) == []


def test_a_stall_is_reported_once():
    detector = DeadAirDetector(PARAMS)
    work = [Work("stt", ("utterance", 7), 100.0)]
    assert len(detector.check(106.0, Owed(("utterance", 7), 100.0), work)) == 1
    for t in (107.0, 110.0, 200.0):
        assert detector.check(t, Owed(("utterance", 7), 100.0), work) == []


def test_a_stage_stall_takes_the_place_of_the_reply_rule_for_that_turn():
    detector = DeadAirDetector(PARAMS)
    assert detector.check(105.0, Owed(4, 103.0), [Work("tts", 4, 100.0)]) == [
        Stall("stage", "tts", 4, 5.0)
    ]
    # The reply is overdue later, now waiting on chat: still the same incident, not reported.
    assert detector.check(111.0, Owed(4, 103.0), [Work("chat", 4, 110.0)]) == []


def test_the_reply_rule_and_the_stage_rule_do_not_report_one_stall_twice():
    detector = DeadAirDetector(DeadAirParams(reply_s=5.0, stage_s=6.0))
    work = [Work("chat", 2, 100.0)]
    assert detector.check(105.0, Owed(2, 100.0), work) == [Stall("reply", "chat", 2, 5.0)]
    assert detector.check(106.0, Owed(2, 100.0), work) == []  # chat's own rule: same stall


def test_another_stage_of_the_same_turn_is_a_new_stall():
    detector = DeadAirDetector(PARAMS)
    assert len(detector.check(105.0, None, [Work("tts", 5, 100.0)])) == 1
    assert detector.check(115.0, None, [Work("chat", 5, 110.0)]) == [Stall("stage", "chat", 5, 5.0)]


def test_each_turn_is_its_own_episode():
    detector = DeadAirDetector(PARAMS)
    assert len(detector.check(108.0, Owed(1, 100.0), [])) == 1
    assert detector.check(218.0, Owed(2, 210.0), []) == [Stall("reply", PIPELINE, 2, 8.0)]


def test_a_rule_at_zero_is_off():
    reply_off = DeadAirDetector(DeadAirParams(reply_s=0, stage_s=5.0))
    assert reply_off.check(1000.0, Owed(1, 0.0), []) == []
    stage_off = DeadAirDetector(DeadAirParams(reply_s=8.0, stage_s=0))
    assert stage_off.check(1000.0, None, [Work("chat", 1, 0.0)]) == []
    assert not DeadAirParams(reply_s=0, stage_s=0).enabled


def test_stalls_found_together_are_all_reported():
    detector = DeadAirDetector(PARAMS)
    work = [Work("stt", ("utterance", 2), 100.0), Work("tts", 9, 100.0)]
    assert {s.stage for s in detector.check(105.0, None, work)} == {"stt", "tts"}


def test_memory_is_bounded():
    detector = DeadAirDetector(PARAMS, memory=4)
    for turn in range(100):
        detector.check(turn * 10.0 + 9, Owed(turn, turn * 10.0), [])
    assert len(detector._reported) <= 4


def test_messages_name_the_stage():
    assert Stall("stage", "chat", 1, 8.04).describe() == (
        "dead air in chat: no token from the chat model for 8.0 s"
    )
    assert Stall("reply", "stt", 1, 9.0).describe() == (
        "dead air in stt: no agent audio 9.0 s after the user's turn"
    )


def test_tick_follows_the_shortest_rule():
    assert DeadAirParams(reply_s=8.0, stage_s=2.0).tick_s == 0.5
    assert DeadAirParams(reply_s=0, stage_s=0.1).tick_s == 0.05
    assert DeadAirParams(reply_s=60.0, stage_s=0).tick_s == 1.0


def test_waited_on_follows_the_data_path():
    work = [Work("output", 1, 0.0), Work("stt", 1, 0.0), Work("chat", 1, 0.0)]
    assert waited_on(1, work) == "output"
    assert waited_on(2, work) == PIPELINE


def test_a_stage_busy_with_what_it_got_is_not_stuck():
    """TTS held up by paced output (backpressure) is not waiting on its provider."""
    detector = DeadAirDetector(PARAMS)
    assert detector.check(1000.0, None, [Work("tts", 1, 0.0, waiting=False)]) == []


def test_a_busy_stage_still_holds_the_overdue_reply():
    """Chat between two tokens is busy, not waiting: the reply still waits on chat."""
    detector = DeadAirDetector(PARAMS)
    work = [Work("chat", 3, 107.9, waiting=False)]
    assert detector.check(108.0, Owed(3, 100.0), work) == [Stall("reply", "chat", 3, 8.0)]
