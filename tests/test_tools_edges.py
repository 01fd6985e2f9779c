"""Tools on the other edges and the server side of tools: the WebSocket's tool messages,
webhook tools (signed, timed out, retried only when idempotent) through
POST /conversation/process, server tool sets, and what a session may not declare."""

from __future__ import annotations

import asyncio
import json

import httpx
from websockets.asyncio.client import connect

from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.fakes.tool_webhook import ToolWebhook
from testing.tools import WEATHER_SCHEMA, chat_histories

SECRET = "webhook-test-secret"
TIMEOUT = 30


async def next_of(socket, kind: str) -> dict:
    async with asyncio.timeout(TIMEOUT):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] == kind:
                return message


async def test_websocket_client_tool_round_trip(agent, fake_openai):
    fake_openai.chat_replies.extend(
        [ScriptedReply("", [ScriptedCall("get_weather", {"city": "Kyiv"})]), "Snowy in Kyiv."]
    )
    url = f"ws://127.0.0.1:{agent.server.http_port}/ws/voice-agent/tools-ws"
    async with connect(url) as socket:
        await next_of(socket, "session_started")
        tool = {"name": "get_weather", "description": "Weather.", "parameters": WEATHER_SCHEMA}
        await socket.send(json.dumps({"type": "tools", "tools": [{**tool, "barge_in": "nope"}]}))
        bad = await next_of(socket, "error")
        assert "get_weather" in bad["message"] and "barge_in" in bad["message"]
        await socket.send(json.dumps({"type": "tools", "tools": [tool]}))
        await socket.send(json.dumps({"type": "text_input", "text": "Weather in Kyiv?"}))
        call = await next_of(socket, "tool_call")
        assert call["name"] == "get_weather" and json.loads(call["arguments_json"]) == {
            "city": "Kyiv"
        }
        await socket.send('{"type": "tool_result", "call_id": ')  # not JSON
        assert "invalid JSON" in (await next_of(socket, "error"))["message"]
        await socket.send(json.dumps({"type": "tool_result", "call_id": call["call_id"]}))
        assert "exactly one of output or error" in (await next_of(socket, "error"))["message"]
        await socket.send(json.dumps({"type": "tool_result", "call_id": call["call_id"],
                                      "output": {"sky": "snow"}}))  # fmt: skip
        done = await next_of(socket, "tool_call_done")
        assert done["outcome"] == "TOOL_OUTCOME_COMPLETED" and done["output"] == '{"sky": "snow"}'
        reply = await next_of(socket, "conversation_response")
        assert reply["text"] == "Snowy in Kyiv."


async def test_webhook_tool_is_signed_and_its_reply_used(start_server, fake_openai):
    async with ToolWebhook(SECRET.encode()) as hook:
        agent = await start_server(tool_webhook_secret=SECRET, tool_webhook_allowed_urls=[hook.url])
        hook.replies.append({"status": "confirmed", "table": 7})
        fake_openai.chat_replies.extend(
            [ScriptedReply("", [ScriptedCall("book", {"time": "8pm"})]), "Table 7 is yours."]
        )
        tool = {"name": "book", "description": "Book a table.", "runs": "webhook",
                "url": hook.url + "book", "parameters": {"type": "object"}}  # fmt: skip
        async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
            sid = (await http.post("/conversation/start", json={"customer_id": "c1"})).json()
            body = {"session_id": sid["session_id"], "text": "Book 8pm", "tools": [tool]}
            reply = await http.post("/conversation/process", json=body)
            assert reply.status_code == 200, reply.text
            await agent.server.writer.flush()
            turns = (await http.get(f"/sessions/{sid['session_id']}/turns")).json()["turns"]
        [stored] = [c for t in turns for c in t["tool_calls"]]
        assert (stored["name"], stored["outcome"], json.loads(stored["arguments"])) == (
            "book", "completed", {"time": "8pm"},
        )  # fmt: skip
        out = reply.json()
        assert out["agent_response"] == "Table 7 is yours."
        [call] = out["tool_calls"]
        assert call["name"] == "book" and call["outcome"] == "completed"
        assert json.loads(call["output"]) == {"status": "confirmed", "table": 7}
        [received] = hook.calls
        assert received.signed  # HMAC over timestamp and body with the server's secret
        assert received.body["arguments"] == {"time": "8pm"}
        assert received.body["session_id"] == sid["session_id"]
        assert received.body["call_id"] == call["call_id"]


async def test_webhook_timeout_is_an_outcome_and_the_agent_says_so(start_server, fake_openai):
    async with ToolWebhook(SECRET.encode(), hold=asyncio.Event()) as hook:
        agent = await start_server(tool_webhook_secret=SECRET, tool_webhook_allowed_urls=[hook.url])
        fake_openai.chat_replies.extend(
            [
                ScriptedReply("", [ScriptedCall("pay", {})]),
                "Sorry, the payment system did not answer in time.",
            ]
        )
        tool = {"name": "pay", "runs": "webhook", "url": hook.url + "pay", "timeout_s": 0.3}
        async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
            sid = (await http.post("/conversation/start", json={"customer_id": "c2"})).json()
            body = {"session_id": sid["session_id"], "text": "Pay it", "tools": [tool]}
            out = (await http.post("/conversation/process", json=body)).json()
        [call] = out["tool_calls"]
        assert call["outcome"] == "timed_out" and "0.3 s" in call["error"]
        assert out["agent_response"] == "Sorry, the payment system did not answer in time."
        told = chat_histories(fake_openai)[-1][-1]
        assert told["role"] == "tool" and "timed out" in json.loads(told["content"])["error"]
        assert len(hook.calls) == 1  # not idempotent: never retried


async def test_idempotent_webhook_is_retried_after_a_5xx(start_server, fake_openai):
    async with ToolWebhook(SECRET.encode(), replies=[503, {"balance": 12}]) as hook:
        agent = await start_server(tool_webhook_secret=SECRET, tool_webhook_allowed_urls=[hook.url])
        fake_openai.chat_replies.extend([ScriptedReply("", [ScriptedCall("balance", {})]), "12."])
        tool = {"name": "balance", "runs": "webhook", "url": hook.url + "b", "idempotent": True}
        async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
            sid = (await http.post("/conversation/start", json={"customer_id": "c3"})).json()
            body = {"session_id": sid["session_id"], "text": "Balance?", "tools": [tool]}
            out = (await http.post("/conversation/process", json=body)).json()
        assert out["tool_calls"][0]["outcome"] == "completed"
        assert len(hook.calls) == 2 and hook.calls[0].body == hook.calls[1].body


async def test_sessions_cannot_point_webhooks_anywhere_and_rest_refuses_client_tools(agent):
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
        sid = (await http.post("/conversation/start", json={"customer_id": "c4"})).json()
        webhook = {"name": "x", "runs": "webhook", "url": "http://169.254.169.254/latest"}
        reply = await http.post(
            "/conversation/process",
            json={"session_id": sid["session_id"], "text": "hi", "tools": [webhook]},
        )
        assert reply.status_code == 400
        assert "TOOL_WEBHOOK_SECRET" in reply.json()["detail"]
        client = {"name": "y", "runs": "client"}
        reply = await http.post(
            "/conversation/process",
            json={"session_id": sid["session_id"], "text": "hi", "tools": [client]},
        )
        assert reply.status_code == 400 and "client tool" in reply.json()["detail"]


async def test_server_tool_sets_apply_by_default_and_by_name(start_server, fake_openai, tmp_path):
    sets = {
        "tool_sets": {
            "default": [{"name": "end_call", "runs": "builtin"}],
            "support": [{"name": "lookup", "description": "Find an order.", "runs": "client"}],
        }
    }
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(sets))
    agent = await start_server(tools_file=str(path))
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
        sid = (await http.post("/conversation/start", json={"customer_id": "c5"})).json()
        out = (await http.post("/conversation/process",
                               json={"session_id": sid["session_id"], "text": "hi"})).json()  # fmt: skip
        assert out["agent_response"]
        offered = [r.body for r in fake_openai.requests if r.endpoint == "chat"][-1]["tools"]
        assert [t["function"]["name"] for t in offered] == ["end_call"]
        bad = await http.post("/conversation/process",
                              json={"session_id": sid["session_id"], "text": "hi",
                                    "tool_sets": ["nope"]})  # fmt: skip
        assert bad.status_code == 400 and "support" in bad.json()["detail"]
