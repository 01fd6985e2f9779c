"""Barge-in: user speech (or an interrupt) while the agent talks cuts the reply everywhere."""

from __future__ import annotations

from voiceagent.v1 import converse_pb2

from testing.converse_client import Conversation, config, control, speech_requests, text

LONG_REPLY = (
    "Once upon a time there was a small robot. It lived in a quiet town by the sea. "
    "Every morning it walked to the harbour. It counted the boats one by one. "
    "Then it went home and slept until the next day."
)


async def test_speech_during_reply_interrupts_and_history_keeps_spoken_prefix(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0  # several seconds of agent audio per sentence
    fake_openai.chat_replies.extend([LONG_REPLY, "Sure."])
    fake_openai.transcripts.append("Stop, tell me something else")
    convo = Conversation(agent.stub, config())
    convo.send(text("Tell me a story"))
    await convo.until("agent_audio")
    convo.send(*speech_requests("Stop, tell me something else"))

    interrupted = (await convo.until("interrupted")).interrupted
    done = await convo.until("turn_completed")
    assert interrupted.turn_index == 1 and done.turn_completed.interrupted
    assert interrupted.spoken_text == done.turn_completed.agent_text
    assert interrupted.spoken_text and LONG_REPLY.startswith(interrupted.spoken_text)
    assert len(interrupted.spoken_text) < len(LONG_REPLY) / 2
    # The speech start came before the cut; no audio of turn 1 after it.
    kinds = convo.kinds()
    assert kinds.index("speech_started") < kinds.index("interrupted")
    after = convo.events[kinds.index("interrupted") :]
    assert not [e for e in after if e.WhichOneof("event") == "agent_audio"]
    # Audio sent before the cut is what the interrupted event reports (the output is paced,
    # so it is far less than the sentence's full length).
    sent = sum(len(a.audio) for a in convo.of("agent_audio")) / 2 / 24_000 * 1000
    assert abs(sent - interrupted.audio_sent_ms) <= 1
    assert interrupted.audio_sent_ms < 40.0 * len(LONG_REPLY.split(". ")[0])

    second = await convo.until("turn_completed")
    assert second.turn_completed.turn_index == 2
    assert all(a.turn_index == 2 for a in convo.of("agent_audio")[-1:])
    history = [r.body["messages"] for r in fake_openai.requests if r.endpoint == "chat"][-1]
    assert history[-3:] == [
        {"role": "user", "content": "Tell me a story"},
        {"role": "assistant", "content": interrupted.spoken_text},
        {"role": "user", "content": "Stop, tell me something else"},
    ]
    convo.close_input()
    await convo.rest()


async def test_interrupt_control_stops_reply(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0
    fake_openai.chat_replies.append(LONG_REPLY)
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Tell me a story"))
    await convo.until("agent_audio")
    convo.send(control(converse_pb2.CONTROL_ACTION_INTERRUPT))
    interrupted = await convo.until("interrupted")
    done = await convo.until("turn_completed")
    assert done.turn_completed.interrupted
    assert interrupted.interrupted.audio_sent_ms < 2000
    # The session listens again and answers the next turn.
    state = await convo.until("state_changed")
    assert state.state_changed.state == converse_pb2.CONVERSATION_STATE_LISTENING
    convo.send(text("Hello"))
    nxt = await convo.until("turn_completed")
    assert (
        nxt.turn_completed.agent_text == "You said: Hello." and not nxt.turn_completed.interrupted
    )
    convo.close_input()
    await convo.rest()


async def test_text_turn_while_thinking_replaces_the_pending_reply(agent, fake_openai):
    fake_openai.latency["chat"] = 0.5  # the first reply is still being thought about
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("First question"), text("Second question"))
    first = await convo.until("turn_completed")
    assert first.turn_completed.turn_index == 1 and first.turn_completed.interrupted
    assert first.turn_completed.agent_text == ""
    second = await convo.until("turn_completed")
    assert second.turn_completed.agent_text == "You said: Second question."
    convo.close_input()
    await convo.rest()
