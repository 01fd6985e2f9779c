"""Seeing every call: GET /metrics moves as a scripted conversation runs on a real server
(gRPC, WebSocket and REST turns, a provider failure, a barge-in), the functions other features
call (dead air, tool calls, late WebRTC frames) show up, and LOG_FORMAT=json gives one JSON
object per line that carries the session, in-process and from `python -m server`, where the
metrics are also served in multi-process mode."""

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
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from voiceagent.v1 import converse_pb2
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc
from websockets.asyncio.client import connect

from server import logs
from server.config import Settings
from server.http import redact
from server.observe import logcontext, metrics
from server.observe.metrics import EDGES
from tests.converse_client import Conversation, config, control, speech_requests, text
from tests.fakes import Fault
from tests.test_barge_in import LONG_REPLY
from tests.test_ws import Ws, ws_url
from webrtc_bridge.tracks import LATE_S, AgentAudioTrack

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
LATENCY = "voiceagent_stage_latency_seconds_count"


class Scrape:
    """One /metrics reply, parsed: `scrape(name, **labels)` is a sample's value (0 if absent)."""

    def __init__(self, exposition: str) -> None:
        self.families = {f.name: f for f in text_string_to_metric_families(exposition)}
        self.values = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in self.families.values()
            for s in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.values.get((name, frozenset(labels.items())), 0.0)


def moved(later: Scrape, earlier: Scrape, name: str, **labels: str) -> float:
    return later(name, **labels) - earlier(name, **labels)


async def scrape(http: httpx.AsyncClient) -> Scrape:
    reply = await http.get("/metrics")  # no credentials, like /health
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return Scrape(reply.text)


async def eventually(http: httpx.AsyncClient, check, timeout: float = 10.0) -> Scrape:
    """Scrape until `check(scrape)` holds (bounded): the decrement after a stream's end lands
    a moment after the client saw the end."""
    async with asyncio.timeout(timeout):
        while not check(current := await scrape(http)):
            await asyncio.sleep(0.02)  # polling interval; the condition is what we wait on
    return current


async def test_metrics_move_as_a_scripted_conversation_runs(agent, fake_openai):
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
        before = await scrape(http)
        for name in ("voiceagent_live_sessions", "voiceagent_turns", "voiceagent_stage_latency_seconds",
                     "voiceagent_provider_errors", "voiceagent_writer_backlog",
                     "voiceagent_writer_retries", "voiceagent_webrtc_late_frames",
                     "voiceagent_dead_air", "voiceagent_tool_calls"):  # fmt: skip
            assert name in before.families, name
        assert before.families["voiceagent_stage_latency_seconds"].type == "histogram"

        # gRPC: a typed turn, a spoken turn, a turn whose chat fails, a barge-in.
        convo = Conversation(agent.stub, config())
        await convo.until("session_started")
        assert moved(await scrape(http), before, "voiceagent_live_sessions", edge="grpc") == 1
        convo.send(text("Hello"))
        await convo.until("turn_completed")
        speech = speech_requests("Hello there")
        convo.send(*speech)
        await convo.until("turn_completed")
        fake_openai.inject("chat", Fault.status(500), Fault.status(500))  # first try + retry
        convo.send(text("Fail, please"))
        await convo.until("error")
        await convo.until("turn_completed")
        fake_openai.tts_ms_per_char = 40.0  # seconds of agent audio: time to barge in
        fake_openai.chat_replies.append(LONG_REPLY)
        convo.send(text("Tell me a story"))
        await convo.until("agent_audio")
        convo.send(control(converse_pb2.CONTROL_ACTION_INTERRUPT))
        await convo.until("interrupted")
        await convo.until("turn_completed")
        fake_openai.tts_ms_per_char = 5.0
        during = await scrape(http)
        convo.close_input()
        await convo.rest()

        def delta(name: str, **labels: str) -> float:
            return moved(during, before, name, **labels)

        assert delta("voiceagent_turns_total", edge="grpc") == 4
        assert delta("voiceagent_interruptions_total", edge="grpc") == 1
        assert delta("voiceagent_audio_frames_in_total", edge="grpc") == len(speech)
        assert delta("voiceagent_audio_frames_out_total", edge="grpc") > 0
        assert delta("voiceagent_sessions_started_total", edge="grpc") == 1
        # Stages a turn never reached are not observed: the failed turn has no first token.
        assert delta(LATENCY, stage="llm_first_token", edge="grpc") == 3
        assert delta(LATENCY, stage="tts_first_byte", edge="grpc") == 3
        assert delta(LATENCY, stage="end_of_speech_to_first_audio", edge="grpc") == 3
        assert delta(LATENCY, stage="vad_stop_to_transcript", edge="grpc") == 1
        assert delta("voiceagent_provider_errors_total", role="chat", code="provider_failed") == 1
        assert during(
            "voiceagent_stage_latency_seconds_bucket",
            stage="llm_first_token", edge="grpc", le="10.0",
        ) >= 3  # fmt: skip

        # WebSocket: a typed turn.
        async with connect(ws_url(agent, f"metrics-{uuid.uuid4().hex[:8]}")) as socket:
            ws = Ws(socket)
            await ws.next("session_started")
            live = await scrape(http)
            assert moved(live, before, "voiceagent_live_sessions", edge="websocket") == 1
            await ws.send(type="text_input", text="Hello socket")
            await ws.next("conversation_response")
            after_ws = await scrape(http)
        assert moved(after_ws, before, "voiceagent_turns_total", edge="websocket") == 1
        assert moved(after_ws, before, LATENCY, stage="llm_first_token", edge="websocket") == 1

        # REST: a typed turn on a started session.
        sid = (await http.post("/conversation/start", json={"customer_id": "m"})).json()
        reply = await http.post(
            "/conversation/process", json={"session_id": sid["session_id"], "text": "Hi"}
        )
        assert reply.status_code == 200, reply.text

        # Functions features built in parallel call (the dead-air watchdog, tools).
        metrics.dead_air("llm")
        metrics.tool_call("ok")

        def settled(s: Scrape) -> bool:  # every stream has ended and been unregistered
            return not any(moved(s, before, "voiceagent_live_sessions", edge=e) for e in EDGES)

        end = await eventually(http, settled)
        assert moved(end, before, "voiceagent_turns_total", edge="rest") == 1
        assert moved(end, before, "voiceagent_sessions_started_total", edge="rest") == 1
        assert moved(end, before, "voiceagent_dead_air_total", stage="llm") == 1
        assert moved(end, before, "voiceagent_tool_calls_total", outcome="ok") == 1
        assert end("voiceagent_writer_backlog") >= 0  # sampled from this server's writer
        assert end("voiceagent_writer_retries_total") >= before("voiceagent_writer_retries_total")


def test_writer_numbers_are_copied_and_counters_only_add_what_is_new():
    class Writer:  # what a WriteBehindWriter shows: its queue and its counters
        pending = 7
        metrics = {"retries": 2, "dropped": 0}

    def value(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    writer = Writer()
    retries, dropped = (
        value("voiceagent_writer_retries_total"),
        value("voiceagent_writer_dropped_total"),
    )
    metrics.sync_writer(writer)
    assert value("voiceagent_writer_backlog") == 7
    assert value("voiceagent_writer_retries_total") == retries + 2
    writer.pending, writer.metrics = 0, {"retries": 3, "dropped": 5}
    metrics.sync_writer(writer)
    metrics.sync_writer(writer)  # nothing new: nothing added
    assert value("voiceagent_writer_backlog") == 0
    assert value("voiceagent_writer_retries_total") == retries + 3
    assert value("voiceagent_writer_dropped_total") == dropped + 5


async def test_a_late_webrtc_frame_is_counted():
    before = REGISTRY.get_sample_value("voiceagent_webrtc_late_frames_total") or 0.0
    track = AgentAudioTrack()
    track._account(LATE_S * 2, asyncio.get_running_loop())  # released two periods late
    track._account(0.0, asyncio.get_running_loop())  # on time
    assert track.stats.late_frames == 1
    assert REGISTRY.get_sample_value("voiceagent_webrtc_late_frames_total") == before + 1


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


def test_the_grafana_dashboard_charts_every_metric_and_only_those():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "voiceagent.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}
    families = [f for f in REGISTRY.collect() if f.name.startswith("voiceagent_")]
    exported = {f.name + suffix for f in families for suffix in suffixes[f.type]}
    used = {name for expr in exprs for name in re.findall(r"voiceagent_[a-z_]+", expr)}
    assert used <= exported, f"not exported: {used - exported}"
    charted = {f.name for f in families if any(f.name + s in used for s in suffixes[f.type])}
    assert charted == {f.name for f in families}
    assert any("histogram_quantile(0.95" in e for e in exprs)
