"""Dead air on a real server: each provider stalled in turn (the fake OpenAI server never
answers), the watchdog notices, says so, ends the stuck work, and the session goes on."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

import pytest
from voiceagent.v1 import converse_pb2

from pipeline.providers.base import ProviderError
from pipeline.turn import Turn
from pipeline.watched import ProviderWatch
from server.persistence import records
from server.sessions.opener import SessionRequest
from testing.converse_client import Conversation, config, speech_requests, text
from testing.fakes import Fault

DEAD_AIR = converse_pb2.ERROR_CODE_DEAD_AIR
# Limits well below the SDK's own timeout (5 s in tests), yet above what a normal request
# takes on a loaded machine. The stage rule alone here; the reply rule has its own test.
STAGE_ONLY = dict(dead_air_stage_s=2.0, dead_air_reply_s=60.0)
RECOVERY = "Sorry, I lost my train of thought. Could you say that again?"


def counts(server) -> dict[str, int]:
    return dict(server.server.core.opener.on_dead_air.counts)


@pytest.mark.parametrize(
    ("endpoint", "stage"), [("transcriptions", "stt"), ("chat", "chat"), ("speech", "tts")]
)
async def test_stalled_provider_is_cut_and_the_next_turn_works(
    start_server, fake_openai, caplog, endpoint, stage
):
    caplog.set_level(logging.WARNING, logger="pipeline.watchdog")
    server = await start_server(**STAGE_ONLY)
    fake_openai.inject(endpoint, Fault.stall())
    convo = Conversation(server.stub, config())
    session_id = (await convo.until("session_started")).session_started.session_id
    convo.send(*speech_requests("Hello there"))

    error = (await convo.until("error")).error
    assert error.code == DEAD_AIR
    assert error.message.startswith(f"dead air in {stage}: "), error.message
    assert error.turn_index == (0 if stage == "stt" else 1)  # no turn before a transcript
    if stage != "stt":  # the stalled turn ends; TTS's keeps the text that went out
        done = (await convo.until("turn_completed")).turn_completed
        assert done.turn_index == 1 and done.agent_audio_ms == 0
        assert done.agent_text == ("" if stage == "chat" else "You said: hello there.")
    assert counts(server) == {stage: 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(session_id in w and f"dead air in {stage}" in w for w in warnings), warnings

    fake_openai.transcripts.append("Hello again")
    convo.send(*speech_requests("Hello again"))
    ok = (await convo.until("turn_completed")).turn_completed
    assert ok.agent_text == "You said: Hello again." and ok.agent_audio_ms > 0
    assert ok.turn_index == (1 if stage == "stt" else 2)
    convo.close_input()
    await convo.rest()
    assert len(convo.of("error")) == 1 and counts(server) == {stage: 1}  # reported once


async def test_overdue_reply_is_cut_even_while_the_stage_waits_within_its_own_limit(
    start_server, fake_openai
):
    """The reply rule: no audio DEAD_AIR_REPLY_S after the user's turn, whatever the stages."""
    server = await start_server(dead_air_reply_s=2.0, dead_air_stage_s=0, openai_timeout_s=30.0)
    fake_openai.latency["chat"] = 6.0  # slow, not stalled: it would answer, too late
    convo = Conversation(server.stub, config(input_rate=None))
    convo.send(text("Hello"))
    error = (await convo.until("error")).error
    assert error.code == DEAD_AIR and error.turn_index == 1
    assert re.fullmatch(
        r"dead air in chat: no agent audio [\d.]+ s after the user's turn; cancelled", error.message
    )
    await convo.until("turn_completed")
    fake_openai.latency["chat"] = 0.0
    convo.send(text("Hello again"))
    ok = (await convo.until("turn_completed")).turn_completed
    assert ok.agent_text == "You said: Hello again." and ok.agent_audio_ms > 0
    convo.close_input()
    await convo.rest()
    assert counts(server) == {"chat": 1}


@pytest.mark.parametrize(("endpoint", "stage"), [("transcriptions", "stt"), ("chat", "chat")])
async def test_recovery_line_is_said_as_an_agent_turn(start_server, fake_openai, endpoint, stage):
    server = await start_server(**STAGE_ONLY, dead_air_recovery_text=RECOVERY)
    fake_openai.inject(endpoint, Fault.stall())
    convo = Conversation(server.stub, config())
    convo.send(*speech_requests("Hello there"))
    error = (await convo.until("error")).error
    assert error.message.startswith(f"dead air in {stage}: ")
    recovery = (
        await convo.until("turn_completed", lambda t: t.agent_text == RECOVERY)
    ).turn_completed
    assert recovery.user_text == "" and recovery.agent_audio_ms > 0
    assert RECOVERY in [d.text for d in convo.of("agent_text_delta")]

    fake_openai.transcripts.append("Hello again")
    convo.send(*speech_requests("Hello again"))
    ok = (await convo.until("turn_completed")).turn_completed
    assert ok.agent_text == "You said: Hello again." and ok.turn_index == recovery.turn_index + 1
    # What the model hears next: the recovery line as said, and no empty user message.
    messages = [m for m in fake_openai.requests if m.endpoint == "chat"][-1].body["messages"]
    said = [(m["role"], m["content"]) for m in messages if m["role"] != "system"]
    expected = [("assistant", RECOVERY), ("user", "Hello again")]
    if stage == "chat":  # the stalled turn's input stays; it got no reply
        expected = [("user", "hello there"), *expected]
    assert said == expected
    convo.close_input()
    await convo.rest()
    assert counts(server) == {stage: 1}


async def test_normal_conversation_never_triggers_it(start_server, fake_openai):
    """Small limits, a paced multi-sentence reply longer than both of them, slow but steady
    tokens and audio bytes: the watchdog stays quiet."""
    server = await start_server(dead_air_reply_s=4.0, dead_air_stage_s=2.0)
    fake_openai.chat_token_delay = 0.05
    fake_openai.tts_chunk_delay = 0.1  # 100 ms of audio per 100 ms: just real time
    fake_openai.tts_ms_per_char = 40.0
    fake_openai.chat_replies.append(
        "Sure, here is the plan for today. First we walk the dog around the park. "
        "Then we buy bread at the bakery. After that we rest for a while at home."
    )
    convo = Conversation(server.stub, config())
    convo.send(*speech_requests("What is the plan"))
    long = (await convo.until("turn_completed")).turn_completed
    assert long.agent_audio_ms > 5000  # longer than both limits
    convo.send(*speech_requests("Thank you"))
    await convo.until("turn_completed")
    convo.send(text("Bye"))
    await convo.until("turn_completed")
    convo.close_input()
    await convo.rest()
    assert not convo.of("error") and not convo.of("interrupted")
    assert counts(server) == {}


async def eventually(condition, timeout: float = 10.0) -> None:
    """Wait for an observable condition, within a bound."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_client_taking_no_events_is_dead_air_in_output(start_server, fake_openai):
    """A blocked send: the client stopped reading, the event queue is full, every stage that
    emits waits forever. The stall is logged and counted, the turn cut; once the client reads
    again the next turn works."""
    server = await start_server(**STAGE_ONLY)
    opener = server.server.core.opener
    opened = await opener.open(SessionRequest())
    async with opener.running(opened) as session:
        queue = session.events.queue
        await eventually(lambda: not queue.empty())  # the first state: the stages are running
        while not queue.full():  # what a client that stopped reading leaves behind
            queue.put_nowait(converse_pb2.ConverseResponse(state_changed={"state": 2}))
        await session.push_text("Hello")
        await eventually(lambda: counts(server) == {"output": 1})
        await eventually(lambda: session.conversation.live is None)  # the turn was cut
        stuck = session.conversation.next_turn_index - 1

        async def read_until_reply() -> converse_pb2.TurnCompleted:
            async for event in session.events:
                if (
                    event.WhichOneof("event") == "turn_completed"
                    and event.turn_completed.agent_text
                ):
                    return event.turn_completed
            raise AssertionError("stream ended")

        await session.push_text("Hello again")
        done = await asyncio.wait_for(read_until_reply(), 10.0)
        assert done.agent_text == "You said: Hello again." and done.turn_index == stuck + 1
        assert counts(server) == {"output": 1}


# -- the abort mechanism, without a server ---------------------------------------------------


async def _stalled_request(watch: ProviderWatch) -> None:
    with watch.call("stt") as call:
        await call.wait(asyncio.Event().wait())


async def test_abort_ends_the_wait_with_a_dead_air_error():
    watch = ProviderWatch()
    task = asyncio.create_task(_stalled_request(watch))
    await asyncio.sleep(0)  # let it reach its await
    (call,) = watch.waiting()
    call.abort("dead air in stt: no transcript for 8.0 s; cancelled")
    with pytest.raises(ProviderError) as raised:
        await task
    assert raised.value.code == "dead_air" and "no transcript" in str(raised.value)
    assert not watch.calls


async def test_a_real_cancellation_still_wins_over_an_abort():
    watch = ProviderWatch()
    task = asyncio.create_task(_stalled_request(watch))
    await asyncio.sleep(0)
    watch.waiting()[0].abort("dead air")
    task.cancel()  # e.g. the session hung up at the same moment
    with pytest.raises(asyncio.CancelledError):
        await task


def test_an_agent_only_turn_is_stored_without_a_user_row():
    turn = Turn(index=4, user_text="", speech_end_at=0.0)
    turn.agent_text = RECOVERY
    writes = records.turn_closed(
        "00000000-0000-0000-0000-000000000001", turn, RECOVERY, datetime.now(UTC)
    )
    roles = [w.args[2] for w in writes if len(w.args) > 2 and w.args[2] in ("user", "agent")]
    assert roles == ["agent"]
