"""Scripted chat replies for the fake OpenAI server: text, tool calls, and pauses.

A test puts `ScriptedReply`s in `FakeOpenAI.chat_replies` (plain strings still work). Tool
calls stream the way OpenAI streams them: a first delta with the id and name, then the
arguments in pieces, then `finish_reason: "tool_calls"`. A `pause` event holds the stream at
`pause_at` until the test sets it, so a test can barge in at an exact point of a reply
("before_calls": after the text; "mid_call": after a call's name, before its arguments end).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class ScriptedCall:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str = ""

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass
class ScriptedReply:
    text: str = ""
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    pause: asyncio.Event | None = None
    pause_at: Literal["before_calls", "mid_call"] = "before_calls"
    # Set once the stream reached the pause (so a test knows the model "is" there).
    paused: asyncio.Event = field(default_factory=asyncio.Event)


Chunk = bytes | ScriptedReply  # a ScriptedReply in the chunk list marks its pause point


def reply_chunks(
    reply: ScriptedReply, sse: Callable[..., bytes], call_counter: int
) -> tuple[list[Chunk], str]:
    """The streamed body's chunks for `reply` (sse(delta, finish) renders one) and the reply's
    plain content (for non-streamed requests)."""
    chunks: list[Chunk] = [sse({"role": "assistant", "content": ""})]
    chunks += [sse({"content": p}) for p in re.findall(r"\S+\s*", reply.text)]
    if reply.pause is not None and reply.pause_at == "before_calls":
        chunks.append(reply)
    for index, call in enumerate(reply.tool_calls):
        call_id = call.call_id or f"call_fake{call_counter}_{index}"
        head = {"index": index, "id": call_id, "type": "function"}
        head["function"] = {"name": call.name, "arguments": ""}
        chunks.append(sse({"tool_calls": [head]}))
        if reply.pause is not None and reply.pause_at == "mid_call" and index == 0:
            chunks.append(reply)
        args = call.arguments_json()
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            if piece:
                delta = {"index": index, "function": {"arguments": piece}}
                chunks.append(sse({"tool_calls": [delta]}))
    chunks.append(sse({}, "tool_calls" if reply.tool_calls else "stop"))
    return chunks, reply.text


def last_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `tool` messages at the end of a request's history (what the model was just told)."""
    out = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        out.append(message)
    return list(reversed(out))
