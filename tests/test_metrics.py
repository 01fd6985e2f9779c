"""Seeing every call, in numbers: GET /metrics moves as a scripted conversation runs on a real
server (gRPC, WebSocket and REST turns, a provider failure, a barge-in); the functions other
features call (dead air, tool calls, late WebRTC frames, the writer's numbers) show up; and
the Grafana dashboard charts exactly the metrics the server exports."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from voiceagent.v1 import converse_pb2
from websockets.asyncio.client import connect

from server.observe import metrics
from server.observe.metrics import EDGES
from testing.converse_client import Conversation, config, control, speech_requests, text
from testing.fakes import Fault
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
        # Caller frames are added up per second of audio and when the session ends.
        assert moved(end, before, "voiceagent_audio_frames_in_total", edge="grpc") == len(speech)
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
