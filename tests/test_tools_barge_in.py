"""Barge-in at each point of a tool call's lifecycle, with the history the model is sent next
and the rows stored for the turn asserted: the failures peers report, one test each."""

from __future__ import annotations

import asyncio

from voiceagent.v1 import sessions_pb2, tools_pb2

from testing.converse_client import Conversation, config, control, text
from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.tools import booking_tool, chat_histories, result, weather_tool

COMPLETED = tools_pb2.TOOL_OUTCOME_COMPLETED
CANCELLED = tools_pb2.TOOL_OUTCOME_CANCELLED
INTERRUPT = control(1)  # CONTROL_ACTION_INTERRUPT


async def stored_calls(agent, session_id: str) -> list[tuple[str, int]]:
    await agent.server.writer.flush()
    turns = await agent.sessions.ListTurns(sessions_pb2.ListTurnsRequest(session_id=session_id))
    return [(c.name, c.outcome) for t in turns.turns for c in t.tool_calls]


def session_id(convo: Conversation) -> str:
    return convo.events[0].session_started.session_id


async def test_reply_interrupted_before_its_call_is_complete_never_runs_it(agent, fake_openai):
    pause = asyncio.Event()
    scripted = ScriptedReply(
        "Booking now.",
        [ScriptedCall("book_table", {"time": "8pm"})],
        pause=pause,
        pause_at="mid_call",
    )
    fake_openai.chat_replies.extend([scripted, "Okay, I won't book."])
    convo = Conversation(agent.stub, config(input_rate=None, tools=[booking_tool()]))
    convo.send(text("Book a table at 8"))
    await asyncio.wait_for(scripted.paused.wait(), 10)  # the model is in the middle of the call
    convo.send(text("No wait, don't"))
    done = (await convo.until("tool_call_done")).tool_call_done
    assert done.name == "book_table" and done.outcome == CANCELLED
    assert done.reason == "interrupted before the call was complete" and done.duration_ms == -1
    second = (await convo.until("turn_completed", lambda t: t.turn_index == 2)).turn_completed
    assert second.agent_text == "Okay, I won't book."
    assert "tool_call" not in convo.kinds()  # never requested, so never run
    # The model is not told about a call that never happened.
    last = chat_histories(fake_openai)[-1]
    assert not [m for m in last if m.get("tool_calls") or m["role"] == "tool"]
    pause.set()
    convo.close_input()
    await convo.rest()
    assert await stored_calls(agent, session_id(convo)) == [("book_table", CANCELLED)]


async def test_read_only_call_running_is_cancelled_by_barge_in(agent, fake_openai):
    fake_openai.chat_replies.extend(
        [ScriptedReply("Checking.", [ScriptedCall("get_weather", {"city": "Rome"})]), "Sure."]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather in Rome?"))
    call = (await convo.until("tool_call")).tool_call
    convo.send(INTERRUPT)
    done = (await convo.until("tool_call_done")).tool_call_done
    assert (done.call_id, done.outcome, done.reason) == (call.call_id, CANCELLED, "barge-in")
    convo.send(result(call.call_id, output='"late"'))  # the client answers anyway
    error = (await convo.until("error")).error
    assert "already cancelled" in error.message
    convo.send(text("Never mind"))
    await convo.until("turn_completed", lambda t: t.turn_index == 2)
    last = chat_histories(fake_openai)[-1]
    assert not [m for m in last if m["role"] == "tool"]  # a cancelled call is not history
    convo.close_input()
    await convo.rest()


async def test_side_effecting_call_finishes_after_barge_in_and_its_result_is_answered(
    agent, fake_openai
):
    """pipecat#5823 / livekit#3702: the result of a booking that ran is kept (never dropped,
    never run twice), and the agent answers it after the user's turn."""
    fake_openai.chat_replies.extend(
        [
            ScriptedReply("Booking it.", [ScriptedCall("book_table", {"time": "8pm"})]),
            "Sure, go ahead.",  # the reply to the interruption
            "Your table at 8pm is booked.",  # the follow-up on the late result
        ]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[booking_tool()]))
    convo.send(text("Book a table at 8pm"))
    call = (await convo.until("tool_call")).tool_call
    convo.send(text("Oh and also, one more question"))  # barge-in while the booking runs
    await convo.until("turn_completed", lambda t: t.turn_index == 2)
    assert not [d for d in convo.of("tool_call_done")]  # still running: not cancelled
    convo.send(result(call.call_id, output='{"booked": true}'))
    done = (await convo.until("tool_call_done")).tool_call_done
    assert done.outcome == COMPLETED and done.output == '{"booked": true}'
    follow = (await convo.until("turn_completed", lambda t: t.turn_index == 3)).turn_completed
    assert follow.user_text == "" and follow.agent_text == "Your table at 8pm is booked."
    # The follow-up request carried the call and its result; the call ran once.
    last = chat_histories(fake_openai)[-1]
    assert last[-1] == {"role": "tool", "content": '{"booked": true}', "tool_call_id": call.call_id}
    assert last[-2]["tool_calls"][0]["id"] == call.call_id
    assert convo.of("tool_call").__len__() == 1
    convo.close_input()
    await convo.rest()
    assert await stored_calls(agent, session_id(convo)) == [("book_table", COMPLETED)]


async def test_barge_in_after_the_call_returned_keeps_call_and_result(agent, fake_openai):
    fake_openai.tts_ms_per_char = 60.0
    fake_openai.chat_replies.extend(
        [
            ScriptedReply("", [ScriptedCall("get_weather", {"city": "Oslo"})]),
            "It is very cold in Oslo today, minus ten degrees. Wrap up warm if you go out.",
            "Yes?",
        ]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather in Oslo?"))
    call = (await convo.until("tool_call")).tool_call
    convo.send(result(call.call_id, output='{"c": -10}'))
    await convo.until("agent_audio")  # the result is being spoken
    convo.send(INTERRUPT)
    cut = (await convo.until("interrupted")).interrupted
    convo.send(text("Hm?"))
    await convo.until("turn_completed", lambda t: t.turn_index == 2)
    last = chat_histories(fake_openai)[-1]
    turn1 = last[last.index({"role": "user", "content": "Weather in Oslo?"}) + 1 :]
    assert turn1[0]["tool_calls"][0]["id"] == call.call_id
    assert turn1[1] == {"role": "tool", "content": '{"c": -10}', "tool_call_id": call.call_id}
    assert turn1[2] == {"role": "assistant", "content": cut.spoken_text}  # only what was heard
    assert cut.spoken_text and len(cut.spoken_text) < 40
    convo.close_input()
    await convo.rest()
    assert await stored_calls(agent, session_id(convo)) == [("get_weather", COMPLETED)]


async def test_slow_tool_gets_a_filler_line(start_server, fake_openai):
    agent = await start_server(tool_filler_after_s=0.05, tool_filler_text="Just a second.")
    fake_openai.chat_replies.extend(
        [ScriptedReply("", [ScriptedCall("get_weather", {"city": "Lima"})]), "Warm in Lima."]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather in Lima?"))
    call = (await convo.until("tool_call")).tool_call
    filler = await convo.until("agent_text_delta")  # said while the client has not answered
    assert filler.agent_text_delta.text.strip() == "Just a second."
    await convo.until("agent_audio")
    convo.send(result(call.call_id, output='"warm"'))
    turn = (await convo.until("turn_completed")).turn_completed
    assert turn.agent_text == "Just a second. Warm in Lima."
    convo.close_input()
    await convo.rest()
