"""What the user heard of a reply, turn latencies, and conversation history."""

from __future__ import annotations

from pipeline.conversation import Conversation
from pipeline.providers.base import ChatMessage
from pipeline.turn import Turn

S1 = "The pizza place opens at noon today."
S2 = "They close at ten in the evening tonight."
S3 = "Delivery is free for orders over twenty dollars."


def spoken_turn(audio_sent_ms: float, interrupted: bool = True, index: int = 1) -> Turn:
    """A turn whose three sentences each produced one second of audio."""
    turn = Turn(index=index, user_text="When are you open?", speech_end_at=100.0)
    turn.agent_text = f"{S1} {S2} {S3}"
    for text in (S1, S2, S3):
        sentence = turn.add_sentence(text)
        sentence.audio_ms = 1000.0
        sentence.complete = True
    turn.audio_sent_ms = audio_sent_ms
    turn.interrupted = interrupted
    return turn


def test_sentences_are_placed_one_after_another():
    turn = spoken_turn(0)
    assert [s.start_ms for s in turn.sentences] == [0.0, 1000.0, 2000.0]
    assert turn.audio_generated_ms == 3000.0


def test_not_interrupted_means_everything_was_said():
    turn = spoken_turn(audio_sent_ms=1500, interrupted=False)
    assert turn.spoken_text() == f"{S1} {S2} {S3}"


def test_interrupted_half_way_through_second_sentence():
    turn = spoken_turn(audio_sent_ms=1500)
    words = S2.split()
    half = " ".join(words[: len(words) // 2])
    assert turn.spoken_text() == f"{S1} {half}"


def test_interrupted_at_a_sentence_boundary():
    assert spoken_turn(audio_sent_ms=1000).spoken_text() == S1
    assert spoken_turn(audio_sent_ms=2000).spoken_text() == f"{S1} {S2}"


def test_interrupted_before_any_audio_says_nothing():
    assert spoken_turn(audio_sent_ms=0).spoken_text() == ""


def test_interrupted_before_any_sentence_was_synthesised_says_nothing():
    turn = Turn(index=1, user_text="hi", speech_end_at=0.0)
    turn.agent_text = "Hello there, how can I"
    turn.interrupted = True
    assert turn.spoken_text() == ""


def test_latency_is_minus_one_for_stages_that_did_not_run():
    # A typed input: no VAD, no transcription, and no audio reached the user.
    turn = Turn(index=1, user_text="hi", speech_end_at=10.0)
    turn.llm_request_at = 10.0
    turn.llm_first_token_at = 10.25
    assert turn.latency_ms() == {
        "vad_stop_to_transcript_ms": -1,
        "llm_first_token_ms": 250,
        "tts_first_byte_ms": -1,
        "end_of_speech_to_first_audio_ms": -1,
    }


def test_latency_of_a_full_voice_turn():
    turn = Turn(index=1, user_text="hi", speech_end_at=10.0)
    turn.vad_stop_at, turn.transcript_at = 10.4, 10.7
    turn.llm_request_at, turn.llm_first_token_at = 10.7, 11.0
    turn.tts_request_at, turn.tts_first_byte_at = 11.1, 11.25
    turn.first_audio_at = 11.3
    assert turn.latency_ms() == {
        "vad_stop_to_transcript_ms": 300,
        "llm_first_token_ms": 300,
        "tts_first_byte_ms": 150,
        "end_of_speech_to_first_audio_ms": 1300,
    }


def test_open_turn_records_user_message_and_numbers_turns():
    conv = Conversation(
        instructions="Be brief.",
        history=[ChatMessage("user", "earlier"), ChatMessage("assistant", "reply")],
        next_turn_index=7,
    )
    first = conv.open_turn("I want a pizza", speech_end_at=1.0)
    assert first.index == 7 and first.user_text == "I want a pizza"
    assert conv.live is first
    assert conv.history[-1] == ChatMessage("user", "I want a pizza")
    conv.close_turn(first)
    second = conv.open_turn("With cheese", speech_end_at=2.0)
    assert second.index == 8
    assert conv.next_turn_index == 9


def test_history_passed_in_is_copied():
    history = [ChatMessage("user", "earlier")]
    conv = Conversation(history=history)
    conv.open_turn("now", speech_end_at=0.0)
    assert history == [ChatMessage("user", "earlier")]


def test_close_turn_of_finished_turn_stores_the_whole_reply():
    conv = Conversation()
    closed: list[tuple[Turn, str]] = []
    conv.on_turn_closed = lambda t, said: closed.append((t, said))
    turn = conv.open_turn("When are you open?", speech_end_at=0.0)
    turn.agent_text = f"{S1} {S2}"
    assert conv.close_turn(turn) == f"{S1} {S2}"
    assert conv.history[-1] == ChatMessage("assistant", f"{S1} {S2}")
    assert turn.closed and conv.live is None and closed == [(turn, f"{S1} {S2}")]


def test_close_turn_of_interrupted_turn_stores_only_the_spoken_prefix():
    conv = Conversation(next_turn_index=3)
    turn = conv.open_turn("When are you open?", speech_end_at=0.0)
    spoken = spoken_turn(audio_sent_ms=1500, index=3)
    turn.agent_text, turn.sentences = spoken.agent_text, spoken.sentences
    turn.audio_sent_ms, turn.interrupted = 1500, True

    said = conv.close_turn(turn)
    half = " ".join(S2.split()[: len(S2.split()) // 2])
    assert said == f"{S1} {half}"
    assert conv.history == [
        ChatMessage("user", "When are you open?"),
        ChatMessage("assistant", said),
    ]
    assert S3 not in " ".join(m.content for m in conv.messages())


def test_close_turn_interrupted_before_audio_adds_no_assistant_message():
    conv = Conversation()
    turn = conv.open_turn("Hello", speech_end_at=0.0)
    turn.agent_text, turn.interrupted = "Hi! How can I help?", True
    assert conv.close_turn(turn) == ""
    assert conv.history == [ChatMessage("user", "Hello")]


def test_messages_start_with_system_instructions():
    conv = Conversation(instructions="You are a pizza ordering assistant.")
    conv.open_turn("Hello", speech_end_at=0.0)
    assert conv.messages() == [
        ChatMessage("system", "You are a pizza ordering assistant."),
        ChatMessage("user", "Hello"),
    ]


def test_default_instructions_are_used_and_empty_instructions_add_no_system_message():
    assert Conversation().messages()[0].role == "system"
    assert Conversation().messages()[0].content
    assert Conversation(instructions="").messages() == []
