"""Idle callers lose their slot (and keep their session); HTTP keep-alive is not slowed by
Nagle's algorithm; GET / never reflects the Host header."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from testing.converse_client import Conversation, config, text


async def test_an_idle_grpc_stream_is_closed_and_its_session_resumes(start_server):
    agent = await start_server(session_idle_timeout_s=0.5)
    convo = Conversation(agent.stub, config(None))
    started = await convo.until("session_started")
    sid = started.session_started.session_id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await convo.rest()  # nothing is sent: the server closes the stream
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "idle" in info.value.details() and sid in info.value.details()
    await asyncio.wait_for(agent.server.live.wait_empty(), 5)
    again = Conversation(agent.stub, config(None, session_id=sid))
    again.send(text("hello again"))
    done = await again.until("turn_completed")
    assert done.turn_completed.agent_text
    again.close_input()
    await again.rest()


async def test_a_talking_session_is_not_idle(start_server):
    agent = await start_server(session_idle_timeout_s=0.6)
    convo = Conversation(agent.stub, config(None))
    await convo.until("session_started")
    for i in range(4):  # longer than the timeout in all, each turn inside it
        convo.send(text(f"turn {i}"))
        await convo.until("turn_completed", lambda t, i=i: t.user_text == f"turn {i}")
    convo.close_input()
    await convo.rest()  # ends normally: no DEADLINE_EXCEEDED


async def test_idle_websockets_do_not_lock_out_other_callers(start_server):
    agent = await start_server(session_idle_timeout_s=0.5, max_sessions=2)
    base = agent.http_url.replace("http://", "ws://")
    idle = [await connect(f"{base}/ws/voice-agent/idle-{i}") for i in range(2)]
    for sock in idle:
        assert json.loads(await sock.recv())["type"] == "session_started"
    for sock in idle:  # the server says why, then closes
        messages = []
        with pytest.raises(ConnectionClosed) as info:
            async with asyncio.timeout(10):
                while True:
                    messages.append(json.loads(await sock.recv()))
        assert info.value.rcvd.code == 1000 and "idle" in info.value.rcvd.reason
        assert any(m["type"] == "error" and m["code"] == "idle" for m in messages)
    await asyncio.wait_for(agent.server.live.wait_empty(), 5)
    async with connect(f"{base}/ws/voice-agent/newcomer") as sock:
        assert json.loads(await sock.recv())["type"] == "session_started"


async def test_kept_alive_http_connections_have_nagle_off(agent):
    """asyncio only sets TCP_NODELAY when the socket's proto is IPPROTO_TCP; without it each
    request after the first on a kept-alive connection waited ~44 ms for a delayed ACK. The
    connection the server accepted for this client must have it (the speed is in the bench)."""
    async with httpx.AsyncClient(base_url=agent.http_url) as client:
        for _ in range(3):
            assert (await client.get("/health")).status_code == 200
        connections = list(agent.server.http.server.server_state.connections)
        assert connections
        for protocol in connections:
            sock = protocol.transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_root_does_not_reflect_the_host_header(agent):
    async with httpx.AsyncClient(base_url=agent.http_url) as client:
        info = (await client.get("/", headers={"Host": "evil.example:1"})).json()
    assert info["grpc"]["address"] == f"127.0.0.1:{agent.server.port}"
