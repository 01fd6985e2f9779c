"""The offline chat model with tools: llama.cpp's grammar holds its reply to speech or a call
whose arguments validate against the tool's schema, whatever the small model decides."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from pipeline.providers.base import ChatMessage, ChatTools
from pipeline.providers.local_chat import LocalChat
from pipeline.providers.local_tools import SayStream
from pipeline.tools.lifecycle import ToolCallDelta
from pipeline.tools.spec import parse_tools

TOOLS = parse_tools(
    [
        {
            "name": "book_table",
            "description": "Book a restaurant table.",
            "parameters": {
                "type": "object",
                "properties": {
                    "people": {"type": "integer", "minimum": 1, "maximum": 20},
                    "time": {"type": "string", "enum": ["18:00", "19:00", "20:00"]},
                },
                "required": ["people", "time"],
                "additionalProperties": False,
            },
        },
        {"name": "end_call", "runs": "builtin"},
    ]
)


async def collect(chat: LocalChat, tools: ChatTools) -> tuple[str, list[ToolCallDelta]]:
    said, calls = "", []
    messages = [ChatMessage("user", "Book a table for four people at eight tonight, please.")]
    async for piece in chat.stream(messages, tools):
        if isinstance(piece, ToolCallDelta):
            calls.append(piece)
        else:
            said += piece
    return said, calls


async def test_forced_call_has_schema_valid_arguments():
    chat = LocalChat(max_tokens=96)
    said, [call] = await collect(chat, ChatTools(TOOLS, "book_table"))
    assert said == "" and call.name == "book_table" and call.call_id
    arguments = json.loads(call.arguments)
    Draft202012Validator(dict(TOOLS[0].parameters)).validate(arguments)


async def test_auto_choice_speaks_or_calls_but_always_validly():
    chat = LocalChat(max_tokens=96)
    said, calls = await collect(chat, ChatTools(TOOLS, "auto"))
    assert bool(said) != bool(calls)  # one or the other, never broken JSON leaking out
    for call in calls:
        spec = {s.name: s for s in TOOLS}[call.name]
        Draft202012Validator(dict(spec.parameters)).validate(json.loads(call.arguments))
    assert "{" not in said


def test_say_text_streams_out_of_the_json_as_it_comes():
    s = SayStream()
    pieces = [s.feed(p) for p in ['{ "sa', 'y": "Hel', 'lo \\"you', '\\" \\u00e9', '!"}']]
    assert "".join(pieces) == 'Hello "you" é!' and s.kind == "say" and s.call() is None
    t = SayStream()
    assert t.feed('{"tool": "end_call", "arguments": {}}') == "" and t.kind == "tool"
    assert t.call() == ("end_call", "{}")
