"""Session lifecycle over gRPC: resume, hang-up, and many sessions at once."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from voiceagent.v1 import converse_pb2

from testing.converse_client import Conversation, config, control, speech_requests, text


async def test_resume_continues_history_and_turn_numbers(agent, fake_openai):
    first = Conversation(agent.stub, config(input_rate=None, instructions="Talk like a pirate."))
    session_id = (await first.until("session_started")).session_started.session_id
    first.send(text("My name is Ada"))
    await first.until("turn_completed")
    first.close_input()
    await first.rest()

    again = Conversation(agent.stub, config(input_rate=None, session_id=session_id))
    started = (await again.until("session_started")).session_started
    assert started.resumed and started.session_id == session_id
    again.send(text("What is my name"))
    done = await again.until("turn_completed")
    assert done.turn_completed.turn_index == 2
    messages = [r.body["messages"] for r in fake_openai.requests if r.endpoint == "chat"][-1]
    assert messages == [
        {"role": "system", "content": "Talk like a pirate."},
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "You said: My name is Ada."},
        {"role": "user", "content": "What is my name"},
    ]
    again.close_input()
    await again.rest()


async def test_hang_up_ends_the_session_for_good(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0
    convo = Conversation(agent.stub, config(input_rate=None))
    session_id = (await convo.until("session_started")).session_started.session_id
    convo.send(text("Tell me a long story please"))
    await convo.until("agent_audio")
    convo.send(control(converse_pb2.CONTROL_ACTION_HANG_UP))
    rest = await convo.rest()
    assert (await convo.call.code()) == grpc.StatusCode.OK
    assert rest[-1].state_changed.state == converse_pb2.CONVERSATION_STATE_ENDED
    # The story is seconds long; only what the pacer had already released (its 300 ms lead
    # plus a chunk) reached the client.
    heard_ms = sum(len(a.audio) for a in convo.of("agent_audio")) / 2 / 24
    assert heard_ms <= 400

    again = Conversation(agent.stub, config(input_rate=None, session_id=session_id))
    again.close_input()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await again.rest()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "has ended (hang_up)" in info.value.details()


async def test_twenty_sessions_at_once_stay_independent(agent, fake_openai):
    """Each session speaks (VAD runs for all of them) and types its own question."""

    async def one(i: int) -> tuple[int, list[str], str]:
        convo = Conversation(agent.stub, config())
        convo.send(*speech_requests("Hello there agent"))
        await convo.until("speech_stopped")
        await convo.until("turn_completed")
        convo.send(text(f"Question number {i}"))
        await convo.until("turn_completed", lambda t: t.turn_index == 2)
        convo.close_input()
        await convo.rest()
        turns = [t.agent_text for t in convo.of("turn_completed")]
        return i, turns, (await convo.call.code()).name

    results = await asyncio.gather(*(one(i) for i in range(20)))
    for i, turns, code in results:
        assert code == "OK"
        assert turns == ["You said: hello there.", f"You said: Question number {i}."]
    assert len(agent.server.live) == 0
    assert agent.server.batcher.batches < agent.server.batcher.windows  # VAD windows batched
