"""Converse end to end: a real gRPC server on loopback, the fake OpenAI server behind it."""

from __future__ import annotations

import pytest
from voiceagent.v1 import converse_pb2

from testing.converse_client import Conversation, config, control, speech_requests, text

ORDER = [
    "session_started",
    "speech_started",
    "speech_stopped",
    "transcript",
    "agent_text_delta",
    "agent_audio",
    "turn_completed",
]


def first_positions(kinds: list[str]) -> list[int]:
    return [kinds.index(k) for k in ORDER]


@pytest.mark.parametrize("rate,channels,out_rate", [(16_000, 1, 24_000), (48_000, 2, 16_000)])
async def test_spoken_turn_events_in_order_and_audio_at_requested_rate(
    agent, fake_openai, rate, channels, out_rate
):
    fake_openai.transcripts.append("I want to order a pizza")
    convo = Conversation(agent.stub, config(rate, channels, out_rate))
    convo.send(*speech_requests("I want to order a large pepperoni pizza", rate, channels))
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()).name == "OK"

    kinds = convo.kinds()
    positions = first_positions(kinds)
    assert positions == sorted(positions), kinds
    started = convo.of("session_started")[0]
    assert started.output_format.sample_rate_hz == out_rate
    assert started.providers.stt == "openai/whisper-1"

    # The VAD found the speech: eSpeak's audio starts after 300 ms of lead silence.
    speech = convo.of("speech_stopped")
    assert len(speech) == 1
    assert 0 <= speech[0].start_offset_ms <= 300
    assert speech[0].end_offset_ms - speech[0].start_offset_ms > 1500
    # What STT received: 16 kHz mono WAV holding the utterance with pre-roll and pad.
    stt = [r for r in fake_openai.requests if r.endpoint == "transcriptions"]
    assert len(stt) == 1 and stt[0].audio.sample_rate == 16_000 and stt[0].audio.channels == 1
    assert stt[0].audio.duration_s > 1.8

    assert convo.of("transcript")[0].text == "I want to order a pizza"
    reply = "".join(d.text for d in convo.of("agent_text_delta"))
    assert reply == "You said: I want to order a pizza."
    done = convo.of("turn_completed")[0]
    assert done.agent_text == reply and done.user_text == "I want to order a pizza"
    assert not done.interrupted
    for name in done.latency.DESCRIPTOR.fields_by_name:
        assert getattr(done.latency, name) >= 0, name  # every stage ran and was timed

    audio = b"".join(a.audio for a in convo.of("agent_audio"))
    expected_s = sum(len(r.body["input"]) for r in fake_openai.requests if r.endpoint == "speech")
    expected_s *= fake_openai.tts_ms_per_char / 1000
    assert abs(len(audio) / 2 / out_rate - expected_s) < 0.02
    assert done.agent_audio_ms == round(len(audio) / 2 / out_rate * 1000)
    states = [s.state for s in convo.of("state_changed")]
    assert states[0] == converse_pb2.CONVERSATION_STATE_LISTENING
    assert states[-1] == converse_pb2.CONVERSATION_STATE_ENDED
    assert converse_pb2.CONVERSATION_STATE_THINKING in states
    assert converse_pb2.CONVERSATION_STATE_SPEAKING in states


async def test_two_spoken_turns_keep_history(agent, fake_openai):
    fake_openai.transcripts.extend(["My name is Ada", "What is my name"])
    fake_openai.chat_replies.extend(["Nice to meet you, Ada.", "Your name is Ada."])
    convo = Conversation(agent.stub, config(instructions="Be brief."))
    convo.send(*speech_requests("My name is Ada"))
    await convo.until("turn_completed")
    convo.send(*speech_requests("What is my name"))
    second = await convo.until("turn_completed")
    assert second.turn_completed.turn_index == 2
    assert second.turn_completed.agent_text == "Your name is Ada."
    chats = [r.body["messages"] for r in fake_openai.requests if r.endpoint == "chat"]
    assert chats[1] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name"},
    ]
    convo.close_input()
    await convo.rest()


async def test_text_turn_without_audio_input(agent, fake_openai):
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Hello there, agent"))
    done = await convo.until("turn_completed")
    assert done.turn_completed.agent_text == "You said: Hello there, agent."
    assert convo.of("transcript")[0].text == "Hello there, agent"
    assert convo.of("agent_audio"), "a text turn is still answered with speech"
    assert "speech_started" not in convo.kinds()
    convo.send(control(converse_pb2.CONTROL_ACTION_HANG_UP))
    await convo.rest()
    assert convo.of("state_changed")[-1].state == converse_pb2.CONVERSATION_STATE_ENDED
