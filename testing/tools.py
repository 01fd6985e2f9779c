"""Tool declarations and helpers for tool-call tests (gRPC, WebSocket, WebRTC)."""

from __future__ import annotations

import json

from voiceagent.v1 import converse_pb2, tools_pb2

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


def weather_tool(**fields) -> tools_pb2.ToolDefinition:
    """A read-only client tool (barge-in cancels it)."""
    defaults = dict(
        name="get_weather",
        description="The weather in a city.",
        parameters_json=json.dumps(WEATHER_SCHEMA),
        runner=tools_pb2.TOOL_RUNNER_CLIENT,
        barge_in=tools_pb2.TOOL_BARGE_IN_CANCEL,
    )
    return tools_pb2.ToolDefinition(**(defaults | fields))


def booking_tool(**fields) -> tools_pb2.ToolDefinition:
    """A side-effecting client tool (it finishes even if the caller barges in)."""
    schema = {"type": "object", "properties": {"time": {"type": "string"}}, "required": ["time"]}
    defaults = dict(
        name="book_table",
        description="Book a table.",
        parameters_json=json.dumps(schema),
        runner=tools_pb2.TOOL_RUNNER_CLIENT,
        barge_in=tools_pb2.TOOL_BARGE_IN_FINISH,
    )
    return tools_pb2.ToolDefinition(**(defaults | fields))


END_CALL = tools_pb2.ToolDefinition(name="end_call", runner=tools_pb2.TOOL_RUNNER_BUILTIN)


def result(call_id: str, output: str | None = None, error: str | None = None):
    fields = {"output": output} if output is not None else {"error": error}
    return converse_pb2.ConverseRequest(tool_result=tools_pb2.ToolResult(call_id=call_id, **fields))


def chat_histories(fake) -> list[list[dict]]:
    """The messages of every chat request the fake OpenAI server received, in order."""
    return [r.body["messages"] for r in fake.requests if r.endpoint == "chat"]
