"""The tool-call logic as plain objects: declarations, the one-outcome lifecycle, assembling
streamed calls, history around calls, webhook signatures. No asyncio, no network."""

from __future__ import annotations

import json
import time

import pytest

from pipeline.conversation import Conversation
from pipeline.providers.base import ChatMessage, ToolCallRequest
from pipeline.tools.lifecycle import (
    CallAssembler,
    Outcome,
    ResultRejected,
    ToolCall,
    ToolCallDelta,
    parse_result,
)
from pipeline.tools.spec import BargeIn, Runs, ToolSpecError, check_choice, parse_tools
from pipeline.tools.webhook import sign, verify
from pipeline.turn import ToolStep, Turn
from server.sessions.tools import ToolSetsError, load_tool_sets

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.mark.parametrize(
    ("tool", "names"),
    [
        ({"name": "has space"}, ["tools[0]", "name"]),
        ({"name": "t", "parameters": {"type": "string"}}, ["'t'", "parameters"]),
        ({"name": "t", "parameters": {"type": "object", "properties": 3}}, ["'t'", "parameters"]),
        ({"name": "t", "runs": "somewhere"}, ["'t'", "runs"]),
        ({"name": "t", "barge_in": "maybe"}, ["'t'", "barge_in"]),
        ({"name": "t", "timeout_s": 0}, ["'t'", "timeout_s"]),
        ({"name": "t", "runs": "webhook"}, ["'t'", "url"]),
        ({"name": "t", "url": "http://x/"}, ["'t'", "url"]),
        ({"name": "hang", "runs": "builtin"}, ["'hang'", "name", "end_call"]),
        ({"name": "t", "colour": "red"}, ["'t'", "colour", "unknown field"]),
    ],
)
def test_declaration_errors_name_the_tool_and_the_field(tool, names):
    with pytest.raises(ToolSpecError) as info:
        parse_tools([tool])
    for name in names:
        assert name in str(info.value)


def test_declarations_defaults_and_duplicates():
    [spec] = parse_tools([{"name": "lookup", "description": "d", "parameters": SCHEMA}])
    assert (spec.runs, spec.barge_in, spec.timeout_s) == (Runs.CLIENT, BargeIn.FINISH, 10.0)
    assert spec.openai_tool()["function"]["parameters"] == SCHEMA
    [end] = parse_tools([{"name": "end_call", "runs": "builtin"}])
    assert end.barge_in is BargeIn.CANCEL and "Hang up" in end.description
    with pytest.raises(ToolSpecError, match="declared twice"):
        parse_tools([{"name": "a"}, {"name": "a"}])
    assert check_choice("", [spec]) == "auto" and check_choice("lookup", [spec]) == "lookup"
    with pytest.raises(ToolSpecError, match="tool_choice"):
        check_choice("other", [spec])


def test_a_call_has_exactly_one_outcome():
    call = ToolCall("c1", "t", "{}", 1, requested_at=1.0)
    call.start(2.0)
    assert call.finish(Outcome.CANCELLED, 2.5, reason="barge-in")
    assert not call.finish(Outcome.COMPLETED, 3.0, output="late")  # too late: refused
    assert (call.outcome, call.output, call.reason, call.duration_ms) == (
        Outcome.CANCELLED, "", "barge-in", 500,
    )  # fmt: skip
    with pytest.raises(RuntimeError):
        call.start(4.0)


def test_arguments_are_checked_against_the_schema():
    [spec] = parse_tools([{"name": "t", "parameters": SCHEMA}])
    ok = ToolCall("c", "t", '{"n": 3}', 1, spec=spec)
    assert ok.check_arguments() == ""
    assert "not valid JSON" in ToolCall("c", "t", "{n:", 1, spec=spec).check_arguments()
    assert "'n' is a required" in ToolCall("c", "t", "{}", 1, spec=spec).check_arguments()
    assert "no tool named" in ToolCall("c", "x", "{}", 1).check_arguments()


def test_assembler_joins_streamed_deltas_per_index():
    a = CallAssembler()
    for d in [
        ToolCallDelta(0, "id0", "get_", ""),
        ToolCallDelta(1, "id1", "other", '{"a"'),
        ToolCallDelta(0, "", "weather", '{"city":'),
        ToolCallDelta(0, "", "", ' "Oslo"}'),
        ToolCallDelta(1, "", "", ": 1}"),
    ]:
        a.push(d)
    assert a.pending and a.names() == ["get_weather", "other"]
    calls = a.complete({}, 3, 9.0, "fallback")
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("id0", "get_weather", {"city": "Oslo"}),
        ("id1", "other", {"a": 1}),
    ]
    assert not a.pending


def test_history_keeps_words_before_a_call_as_heard_then_the_call_and_result():
    turn = Turn(index=1, user_text="q", speech_end_at=0.0)
    turn.agent_text = "Let me check that for you. It is sunny."
    call = ToolCall("c1", "weather", "{}", 1)
    call.finish(Outcome.COMPLETED, 1.0, output='"sun"')
    cancelled = ToolCall("c2", "other", "{}", 1)
    cancelled.finish(Outcome.CANCELLED, 1.0, reason="barge-in")
    turn.steps.append(ToolStep(len("Let me check that for you."), [call, cancelled]))
    full = Conversation.reply_messages(turn, turn.agent_text)
    assert full == [
        ChatMessage(
            "assistant",
            "Let me check that for you.",
            tool_calls=(ToolCallRequest("c1", "weather", "{}"),),
        ),
        ChatMessage("tool", '"sun"', tool_call_id="c1"),  # the cancelled call is left out
        ChatMessage("assistant", "It is sunny."),
    ]
    # Cut after three words: the call is still in history (it ran), with only those words.
    cut = Conversation.reply_messages(turn, "Let me check")
    assert [m.content for m in cut] == ["Let me check", '"sun"']


def test_tool_results_from_clients():
    assert parse_result({"a": 1}, None) == ('{"a": 1}', "")
    assert parse_result("plain", None) == ("plain", "")
    assert parse_result(None, "broke") == ("", "broke")
    for output, error in [(None, None), ("x", "y"), (None, "  ")]:
        with pytest.raises(ResultRejected):
            parse_result(output, error)


def test_webhook_signatures():
    body, now = b'{"x": 1}', int(time.time())
    header = sign(b"k", body, now)
    assert verify(b"k", body, header)
    assert not verify(b"other", body, header)
    assert not verify(b"k", body + b" ", header)
    assert not verify(b"k", body, sign(b"k", body, now - 3600))  # stale
    assert not verify(b"k", body, "garbage")


def test_tool_sets_file_errors_stop_start_up(tmp_path):
    path = tmp_path / "tools.json"
    path.write_text(json.dumps({"tool_sets": {"s": [{"name": "bad name"}]}}))
    with pytest.raises(ToolSetsError, match="tool_sets.s"):
        load_tool_sets(path)
    path.write_text("[1, 2]")
    with pytest.raises(ToolSetsError, match="tool_sets"):
        load_tool_sets(path)
