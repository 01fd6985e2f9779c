"""Tool calls over Converse: the lifecycle, end to end, with the fake OpenAI server scripting
the model's calls (the real openai SDK streams them) and the history it is sent checked."""

from __future__ import annotations

import json

import httpx
from voiceagent.v1 import converse_pb2, sessions_pb2, tools_pb2

from testing.converse_client import Conversation, config, text
from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.tools import END_CALL, chat_histories, result, weather_tool

COMPLETED = tools_pb2.TOOL_OUTCOME_COMPLETED


async def test_client_tool_round_trip(start_server, fake_openai):
    agent = await start_server()
    fake_openai.chat_replies.extend(
        [
            ScriptedReply("Let me check.", [ScriptedCall("get_weather", {"city": "Paris"})]),
            "It is sunny in Paris.",
        ]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("What's the weather in Paris?"))
    call = (await convo.until("tool_call")).tool_call
    assert call.name == "get_weather" and json.loads(call.arguments_json) == {"city": "Paris"}
    assert call.turn_index == 1 and call.runner == tools_pb2.TOOL_RUNNER_CLIENT
    convo.send(result(call.call_id, output='{"sky": "sunny"}'))
    done = (await convo.until("tool_call_done")).tool_call_done
    assert (done.call_id, done.outcome, done.output) == (
        call.call_id,
        COMPLETED,
        '{"sky": "sunny"}',
    )
    turn = (await convo.until("turn_completed")).turn_completed
    assert turn.agent_text == "Let me check. It is sunny in Paris."
    # The tools were offered; the second request carried the call and its result, after the
    # words said before it (exactly as heard).
    first, second = [r.body for r in fake_openai.requests if r.endpoint == "chat"]
    assert first["tools"][0]["function"]["name"] == "get_weather"
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.arguments_json},
                }
            ],
        },
        {"role": "tool", "content": '{"sky": "sunny"}', "tool_call_id": call.call_id},
    ]
    session_id = convo.events[0].session_started.session_id
    convo.close_input()
    await convo.rest()
    await agent.server.writer.flush()
    turns = await agent.sessions.ListTurns(sessions_pb2.ListTurnsRequest(session_id=session_id))
    stored = [t for t in turns.turns if t.role == sessions_pb2.TURN_ROLE_AGENT][0]
    assert [(c.call_id, c.name, c.outcome, c.output) for c in stored.tool_calls] == [
        (call.call_id, "get_weather", COMPLETED, '{"sky": "sunny"}')
    ]
    assert json.loads(stored.tool_calls[0].arguments_json) == {"city": "Paris"}
    assert stored.tool_calls[0].duration_ms >= 0
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        exposed = (await http.get("/metrics")).text
    assert 'voiceagent_tool_calls_total{outcome="completed"}' in exposed
    # Resumed (from the database, by a fresh server): the call and its result are history.
    await agent.server.stop()
    again = await start_server()
    convo = Conversation(again.stub, config(input_rate=None, session_id=session_id))
    convo.send(text("And tomorrow?"))
    await convo.until("turn_completed")
    history = chat_histories(fake_openai)[-1]
    assert [m["role"] for m in history[-5:]] == ["user", "assistant", "tool", "assistant", "user"]
    assert history[-4]["tool_calls"][0]["id"] == call.call_id
    assert history[-3] == {
        "role": "tool",
        "content": '{"sky": "sunny"}',
        "tool_call_id": call.call_id,
    }
    convo.close_input()
    await convo.rest()


async def test_parallel_calls_run_together_and_results_go_back_in_order(agent, fake_openai):
    calls = [ScriptedCall("get_weather", {"city": c}) for c in ("Paris", "Rome")]
    fake_openai.chat_replies.extend([ScriptedReply("", calls), "Paris sunny, Rome rainy."])
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather in Paris and Rome?"))
    first = (await convo.until("tool_call")).tool_call
    second = (await convo.until("tool_call")).tool_call  # both asked before either is answered
    assert [json.loads(c.arguments_json)["city"] for c in (first, second)] == ["Paris", "Rome"]
    convo.send(result(second.call_id, output='"rainy"'), result(first.call_id, output='"sunny"'))
    await convo.until("turn_completed")
    last = chat_histories(fake_openai)[-1]
    assert [(m["role"], m.get("tool_call_id")) for m in last[-2:]] == [
        ("tool", first.call_id),
        ("tool", second.call_id),
    ]
    assert [m["content"] for m in last[-2:]] == ['"sunny"', '"rainy"']
    convo.close_input()
    await convo.rest()


async def test_bad_tool_results_get_errors_and_the_session_goes_on(agent, fake_openai):
    fake_openai.chat_replies.extend(
        [ScriptedReply("", [ScriptedCall("get_weather", {"city": "Oslo"})]), "Cold in Oslo."]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather in Oslo?"))
    call = (await convo.until("tool_call")).tool_call
    convo.send(result("no-such-call", output="{}"))
    error = (await convo.until("error")).error
    assert error.code == converse_pb2.ERROR_CODE_INVALID_TOOL_RESULT
    assert "no-such-call" in error.message
    convo.send(result(call.call_id, output='"cold"'))
    await convo.until("tool_call_done")
    convo.send(result(call.call_id, output='"again"'))  # answered twice
    error = (await convo.until("error")).error
    assert error.code == converse_pb2.ERROR_CODE_INVALID_TOOL_RESULT
    assert "already completed" in error.message
    assert (await convo.until("turn_completed")).turn_completed.agent_text == "Cold in Oslo."
    convo.send(text("Thanks"))  # the session goes on
    assert (await convo.until("turn_completed")).turn_completed.turn_index == 2
    convo.close_input()
    await convo.rest()


async def test_arguments_that_break_the_schema_fail_the_call_and_the_model_is_told(
    agent, fake_openai
):
    fake_openai.chat_replies.extend(
        [ScriptedReply("", [ScriptedCall("get_weather", {"town": "Oslo"})]), "Which city?"]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[weather_tool()]))
    convo.send(text("Weather?"))
    done = (await convo.until("tool_call_done")).tool_call_done
    assert done.outcome == tools_pb2.TOOL_OUTCOME_FAILED
    assert "city" in done.error and done.duration_ms == -1  # it never ran
    await convo.until("turn_completed")
    told = chat_histories(fake_openai)[-1][-1]
    assert told["role"] == "tool" and "city" in json.loads(told["content"])["error"]
    convo.close_input()
    await convo.rest()


async def test_bad_tool_declarations_are_refused_naming_the_tool_and_field(agent):
    bad = weather_tool(parameters_json='{"type": "array"}')
    convo = Conversation(agent.stub, config(input_rate=None, tools=[bad]))
    try:
        await convo.next()
        raise AssertionError("the stream should have been refused")
    except Exception as exc:  # grpc.aio.AioRpcError
        assert exc.code().name == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
        assert "get_weather" in exc.details() and "parameters" in exc.details()  # type: ignore[attr-defined]


async def test_end_call_hangs_up_after_the_goodbye_is_heard(agent, fake_openai):
    fake_openai.chat_replies.append(
        ScriptedReply("Goodbye, have a nice day!", [ScriptedCall("end_call")])
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[END_CALL]))
    convo.send(text("That's all, bye"))
    events = await convo.rest()  # the server ends the stream by itself
    kinds = convo.kinds(events)
    audio = [e.agent_audio for e in events if e.WhichOneof("event") == "agent_audio"]
    assert audio, "the goodbye was spoken"
    done = [e.tool_call_done for e in events if e.WhichOneof("event") == "tool_call_done"]
    assert [(d.name, d.outcome) for d in done] == [("end_call", COMPLETED)]
    # Hung up only after every goodbye audio chunk and the turn's completion.
    assert kinds.index("tool_call_done") > max(i for i, k in enumerate(kinds) if k == "agent_audio")
    assert kinds.index("turn_completed") < kinds.index("tool_call_done")
    session_id = convo.events[0].session_started.session_id
    await agent.server.writer.flush()
    got = await agent.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=session_id))
    assert got.session.end_reason == "agent_hung_up"


async def test_end_call_is_cancelled_when_the_caller_barges_in(agent, fake_openai):
    fake_openai.tts_ms_per_char = 60.0  # a long goodbye: time to interrupt it
    fake_openai.chat_replies.extend(
        [
            ScriptedReply(
                "Goodbye then, it was lovely to talk to you today.", [ScriptedCall("end_call")]
            ),
            "Of course, what else?",
        ]
    )
    convo = Conversation(agent.stub, config(input_rate=None, tools=[END_CALL]))
    convo.send(text("Bye"))
    await convo.until("agent_audio")
    convo.send(text("Wait, one more thing"))
    done = (await convo.until("tool_call_done")).tool_call_done
    assert (done.name, done.outcome, done.reason) == (
        "end_call",
        tools_pb2.TOOL_OUTCOME_CANCELLED,
        "barge-in",
    )
    first = (await convo.until("turn_completed")).turn_completed
    assert first.turn_index == 1 and first.interrupted
    second = (await convo.until("turn_completed")).turn_completed
    assert second.turn_index == 2 and second.agent_text == "Of course, what else?"
    convo.send(text("Still there?"))
    assert (await convo.until("turn_completed")).turn_completed.turn_index == 3
    convo.close_input()
    await convo.rest()
