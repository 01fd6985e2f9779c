"""Connect/drop churn: Converse streams and WebSockets opened and dropped abruptly, at every
point of a session's life (before it opened, idle, mid-reply), many at once. Afterwards no
session is live, no socket is registered, and the process's open fds, threads, asyncio tasks
and RSS are back within a tolerance of where they were (waited for with a bounded poll), and
the server still completes a turn. 50 of each in the normal run; 500 of each in soak.
"""

from __future__ import annotations

import asyncio
import json
import time

import grpc
import httpx
import pytest
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc
from websockets.asyncio.client import connect

from testing.converse_client import Conversation, config, speech_requests, text
from tests.fuzz_support import STATS, settle, text_turn, usage, wait_no_live
from tests.test_ws import ws_url

BATCH = 10  # connections in flight at once


async def drop_grpc(agent, i: int) -> None:
    """A Converse stream on its own channel, closed without a half-close at stage i % 4."""
    channel = grpc.aio.insecure_channel(agent.address)
    try:
        convo = Conversation(pb_grpc.VoiceAgentServiceStub(channel), config())
        stage = i % 4
        if stage >= 1:
            await convo.until("session_started")
        if stage == 2:
            convo.send(*speech_requests("Hello there")[:30])  # mid-utterance
            await convo.until("speech_started")
        if stage == 3:
            convo.send(text("Tell me a long story about the sea"))
            await convo.until("agent_audio")  # mid-reply
    finally:
        await channel.close(grace=None)  # cancels the call: RST_STREAM, then the connection


async def drop_ws(agent, i: int, tag: str) -> None:
    """A WebSocket whose TCP connection is aborted (no close frame) at stage i % 3."""
    socket = await connect(ws_url(agent, f"churn-{tag}-{i}"))
    try:
        stage = i % 3
        if stage >= 1:
            assert json.loads(await socket.recv())["type"] == "session_started"
        if stage == 2:
            await socket.send(json.dumps({"type": "text_input", "text": "A long story please"}))
            while json.loads(await socket.recv())["type"] != "agent_text_delta":
                pass  # mid-reply
    finally:
        socket.transport.abort()
        await socket.wait_closed()


async def churn(agent, n: int, tag: str) -> None:
    for start in range(0, n, BATCH):
        batch = range(start, min(n, start + BATCH))
        async with asyncio.timeout(60):
            await asyncio.gather(
                *(drop_grpc(agent, i) for i in batch), *(drop_ws(agent, i, tag) for i in batch)
            )
    STATS["churn: Converse streams dropped"] += n
    STATS["churn: WebSockets dropped"] += n


async def quiet(agent) -> None:
    """Nothing live, no WebSocket registered, and the task count steady (bounded poll)."""
    await wait_no_live(agent.server, 20)
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        deadline = time.monotonic() + 20
        while (await http.get("/ws/status")).json()["active_connections"]:
            assert time.monotonic() < deadline, "WebSockets still registered"
            await asyncio.sleep(0.05)
    previous, deadline = -1, time.monotonic() + 20
    while (now := len(asyncio.all_tasks())) != previous and time.monotonic() < deadline:
        previous = now
        await asyncio.sleep(0.2)


async def churn_and_settle(agent, fake_openai, n: int, rss_mb: float) -> None:
    fake_openai.tts_ms_per_char = 20.0  # replies long enough to be cut mid-way
    await churn(agent, BATCH, "warm")  # the first connections set up what stays (pools, caches)
    await text_turn(agent.stub)
    await quiet(agent)
    base = usage()
    await churn(agent, n, "run")
    await quiet(agent)
    # The default executor may start more of its (at most cpu+4) workers: a few threads slack.
    after = await settle(base, fds=8, threads=6, tasks=3, rss_mb=rss_mb, timeout=30)
    for name in ("fds", "threads", "tasks"):  # what was left over once settled
        STATS[f"churn of {n}: {name} over baseline"] = getattr(after, name) - getattr(base, name)
    STATS[f"churn of {n}: RSS over baseline, MB"] = round(after.rss_mb - base.rss_mb)
    await text_turn(agent.stub)  # and the server still works


async def test_websocket_dropped_right_after_the_handshake_is_not_left_live(agent):
    """The defect churn found: a client gone before `session_started` could be sent left its
    session live (and busy) for good; the handler waited for events that never came."""
    for i in range(10):
        await drop_ws(agent, 3 * i, "early")  # stage 0: abort before reading anything
    await wait_no_live(agent.server, 10)
    async with connect(ws_url(agent, "churn-early-0")) as socket:  # not busy: it resumes
        assert json.loads(await socket.recv())["resumed"]


async def test_connect_drop_churn_returns_to_baseline(agent, fake_openai):
    await churn_and_settle(agent, fake_openai, 50, rss_mb=40)


@pytest.mark.soak
@pytest.mark.timeout(1200)
async def test_soak_connect_drop_churn_returns_to_baseline(agent, fake_openai):
    await churn_and_settle(agent, fake_openai, 500, rss_mb=60)
