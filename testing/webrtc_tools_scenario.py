"""The WebRTC tool-call scenario (mode "tools" of testing/webrtc_scenario.py): a client tool
answered over the data channel, then the agent's end_call hangs the call up after its goodbye."""

from __future__ import annotations

import argparse
import json

from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.tools import WEATHER_SCHEMA
from testing.webrtc_peer import Caller, MicTrack
from testing.webrtc_stack import stack

TOOLS = [
    {"name": "get_weather", "description": "The weather.", "parameters": WEATHER_SCHEMA,
     "runs": "client", "barge_in": "cancel"},
    {"name": "end_call", "runs": "builtin"},
]  # fmt: skip


async def tools(args: argparse.Namespace) -> dict:
    async with stack(args.database_url) as s:
        s.fake.chat_replies.extend(
            [
                ScriptedReply("Let me look.", [ScriptedCall("get_weather", {"city": "Paris"})]),
                ScriptedReply("It is sunny in Paris. Goodbye!", [ScriptedCall("end_call")]),
            ]
        )
        caller = Caller(s.base, MicTrack(48_000, 2), args.codec)
        answer = await caller.call(tools=TOOLS)
        caller.send({"type": "text_input", "text": "Weather in Paris, then bye"})
        [call] = await caller.wait_for("tool_call", timeout=30)
        caller.send({"type": "tool_result", "call_id": "nope", "output": {}})
        [bad] = await caller.wait_for("error", timeout=10)
        caller.send({"type": "tool_result", "call_id": call["call_id"], "output": {"sky": "sun"}})
        done = await caller.wait_for("tool_call_done", count=2, timeout=30)
        cleanup_s = await s.wait_no_calls(timeout=30)  # the agent hung up: the call is gone
        row = await s.session_row(answer["session_id"])
        chats = [r.body["messages"] for r in s.fake.requests if r.endpoint == "chat"]
        await caller.close()
        return {
            "tool_call": call,
            "bad_result_error": bad,
            "done": [(d["name"], d["outcome"], d["output"]) for d in done],
            "second_request_tail": chats[-1][-1],
            "row": row,
            "cleanup_s": round(cleanup_s, 2),
            "first_call_arguments": json.loads(call["arguments_json"]),
        }
