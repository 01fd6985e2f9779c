"""Seeing every call, in the logs: LOG_FORMAT=json gives one JSON object per line carrying the
session it was logged in, with secrets redacted; in-process, and from `python -m server`,
which also serves its metrics in multi-process mode (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import uuid

import grpc
import httpx
import pytest
from pydantic import ValidationError
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc
from websockets.asyncio.client import connect

from server import logs
from server.config import Settings
from server.http import redact
from server.observe import logcontext
from testing.converse_client import Conversation, config, text
from tests.test_metrics import ROOT, TIMEOUT, eventually
from tests.test_ws import Ws


async def test_json_lines_carry_the_session_and_keep_secrets_out():
    out = io.StringIO()
    handler = logs.handler("json", out)
    access = logging.getLogger("uvicorn.access")
    mine = logging.getLogger("tests.observability")
    redact.install()
    for logger in (access, mine):
        logger.addHandler(handler)
    old_levels = access.level, mine.level
    access.setLevel(logging.INFO)
    mine.setLevel(logging.INFO)
    try:
        mine.info("outside any session")

        async def in_session() -> None:
            logcontext.bind(
                logcontext.LogContext("s-1", edge="websocket", tenant="acme", turn=lambda: 3)
            )
            mine.info("inside")
            access.info('%s - "GET %s HTTP/1.1" 200', "127.0.0.1", "/ws/x?token=sekrit&a=1")
            try:
                raise ValueError("boom")
            except ValueError:
                mine.exception("failed")

        await asyncio.create_task(in_session())  # its own context, like a session's task
        mine.info("outside again")  # the session's context did not leak into this task
    finally:
        for logger in (access, mine):
            logger.removeHandler(handler)
        access.setLevel(old_levels[0])
        mine.setLevel(old_levels[1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines][:2] == ["outside any session", "inside"]
    outside, inside, request, failed, again = lines
    assert {k: outside[k] for k in logs.FIELDS} == dict.fromkeys(logs.FIELDS)
    assert (inside["session_id"], inside["turn"], inside["edge"], inside["tenant"]) == (
        "s-1", 3, "websocket", "acme",
    )  # fmt: skip
    assert inside["level"] == "INFO" and inside["logger"] == "tests.observability"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", inside["time"])
    assert request["session_id"] == "s-1" and "token=[redacted]&a=1" in request["message"]
    assert "sekrit" not in out.getvalue()
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exception"]
    assert again["session_id"] is None


async def read_lines(stream: asyncio.StreamReader, into: list[str], seen: asyncio.Event) -> None:
    while line := await stream.readline():
        into.append(line.decode())
        seen.set()


async def wait_for_line(lines: list[str], seen: asyncio.Event, pattern: str) -> re.Match:
    async with asyncio.timeout(60):
        while True:
            for line in lines:
                if match := re.search(pattern, line):
                    return match
            seen.clear()
            await seen.wait()


async def test_server_process_logs_json_lines_and_serves_multiprocess_metrics(
    fake_openai, database_url, tmp_path
):
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    secret_key = f"sk-test-{uuid.uuid4().hex}"
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        GRPC_HOST="127.0.0.1",
        GRPC_PORT="0",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        OPENAI_API_KEY=secret_key,
        OPENAI_BASE_URL=fake_openai.base_url,
        LOG_FORMAT="json",
        PROMETHEUS_MULTIPROC_DIR=str(prom_dir),
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    lines: list[str] = []
    seen = asyncio.Event()
    reader = asyncio.create_task(read_lines(proc.stderr, lines, seen))
    try:
        http_port = (await wait_for_line(lines, seen, r"HTTP .* serving on port (\d+)")).group(1)
        grpc_port = (await wait_for_line(lines, seen, r"gRPC serving .* on port (\d+)")).group(1)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            convo = Conversation(pb_grpc.VoiceAgentServiceStub(channel), config(input_rate=None))
            started = (await convo.until("session_started")).session_started
            convo.send(text("Hello"))
            await convo.until("turn_completed")
            convo.close_input()
            await convo.rest()
        http_url = f"http://127.0.0.1:{http_port}"
        socket_id = f"json-{uuid.uuid4().hex[:8]}"
        url = f"ws://127.0.0.1:{http_port}/ws/voice-agent/{socket_id}?token=sekrit-value"
        async with connect(url) as socket:
            ws = Ws(socket)
            await ws.next("session_started")
            await ws.send(type="end_of_input")
            await ws.closed()
        async with httpx.AsyncClient(base_url=http_url, timeout=TIMEOUT) as http:
            end = await eventually(
                http, lambda s: s("voiceagent_live_sessions", edge="websocket") == 0
            )
        assert end("voiceagent_turns_total", edge="grpc") == 1
        assert end("voiceagent_sessions_started_total", edge="websocket") == 1
        assert end("voiceagent_live_sessions", edge="grpc") == 0
        assert list(prom_dir.glob("counter_*.db"))  # the values live in the shared directory
        await wait_for_line(lines, seen, rf"session {started.session_id} no longer live")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 30)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(reader, 10)
    assert proc.returncode == 0, "".join(lines)
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", *logs.FIELDS} <= r.keys() for r in records)
    mine = [r for r in records if r["session_id"] == started.session_id]
    assert any("live on grpc" in r["message"] for r in mine)
    assert all(r["edge"] == "grpc" and r["tenant"] == "default" for r in mine)
    assert any(r["edge"] == "websocket" for r in records)
    assert any("token=[redacted]" in r["message"] for r in records)
    raw = "".join(lines)
    assert "sekrit-value" not in raw and secret_key not in raw
    assert not list(prom_dir.glob(f"gauge_livesum_{proc.pid}.db"))  # retired at exit


def test_log_format_is_text_or_json():
    assert Settings(_env_file=None).log_format == "text"
    with pytest.raises(ValidationError):
        Settings(_env_file=None, log_format="xml")
