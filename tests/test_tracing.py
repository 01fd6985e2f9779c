"""OpenTelemetry traces: off by default; with an in-memory exporter, a real server's gRPC call
-> session -> turn -> stage span tree, its attributes, and no user or agent text unless
TRACE_CONTENT is on."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from voiceagent.v1 import voice_agent_service_pb2 as pb
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from pipeline.providers.base import Providers
from pipeline.turn import Turn
from server import tracing
from server.app import VoiceServer
from server.sessions import traces
from server.sessions.ending import EndReason
from testing.converse_client import Conversation, config, speech_requests, text
from tests.conftest import test_settings as settings_for

CONVERSE = "/voiceagent.v1.VoiceAgentService/Converse"
SYNTHESIZE = "/voiceagent.v1.VoiceAgentService/Synthesize"
USER = "Will it rain in Lisbon tomorrow"
REPLY = "The forecast says sunshine. Bring a hat anyway."


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


# --- configuration from the OTEL_* environment --------------------------------------------


def test_off_unless_an_exporter_is_named():
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": " "}) == []
    disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.exporter_names(disabled) == []
    assert tracing.provider_from_environment({}) is None


def test_exporter_names_follow_the_sdk_conventions():
    names = tracing.exporter_names
    assert names({"OTEL_TRACES_EXPORTER": "otlp"}) == ["otlp_proto_http"]  # what we install
    grpc_env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    assert names(grpc_env) == ["otlp_proto_grpc"]
    traces_protocol = dict(grpc_env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf")
    assert names(traces_protocol) == ["otlp_proto_http"]  # the per-signal variable wins
    assert names({"OTEL_TRACES_EXPORTER": "console, OTLP"}) == ["console", "otlp_proto_http"]
    with pytest.raises(RuntimeError, match="OTEL_EXPORTER_OTLP_PROTOCOL"):
        names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})


def test_provider_from_environment_builds_the_named_exporters(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    # The OTLP exporter is only constructed here: nothing is sent anywhere.
    env = {"OTEL_TRACES_EXPORTER": "console,otlp"}
    provider = tracing.provider_from_environment(env)
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "voiceagent"
        exporters = [p.span_exporter for p in provider._active_span_processor._span_processors]
        kinds = [type(e).__name__ for e in exporters]
        assert kinds == ["ConsoleSpanExporter", "OTLPSpanExporter"]
        assert isinstance(exporters[0], ConsoleSpanExporter)
    finally:
        provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agents-eu")
    named = tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "console"})
    assert named.resource.attributes["service.name"] == "agents-eu"  # the standard variable wins
    named.shutdown()
    with pytest.raises(RuntimeError, match="no trace exporter named 'zipkin-by-fax'"):
        tracing.provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin-by-fax"})


async def test_a_default_server_traces_nothing(agent):
    assert not agent.server.tracing.enabled
    assert agent.server.core.opener.traces.tracer is None
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("hello"))
    await convo.until("turn_completed")  # the no-op path runs a whole turn


# --- spans from a real server ---------------------------------------------------------------


@pytest.fixture
async def traced(fake_openai, database_url):
    """Start a server whose spans go to an in-memory exporter (synchronously, so a span is
    there as soon as it ends); yields (start, exporter)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    servers: list[tuple[VoiceServer, grpc.aio.Channel]] = []

    async def start(**overrides):
        settings = settings_for(fake_openai, database_url=database_url, **overrides)
        server = VoiceServer(settings, tracer_provider=provider)
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        servers.append((server, channel))
        return server, pb_grpc.VoiceAgentServiceStub(channel), channel

    yield start, exporter
    for server, channel in servers:
        await channel.close()
        await server.stop()
    provider.shutdown()


async def finished(exporter: InMemorySpanExporter, name: str, count: int = 1) -> list:
    """The finished spans named `name`, once there are `count` of them (server-side spans end
    just after the client has its answer)."""
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in exporter.get_finished_spans() if s.name == name]
        if len(spans) >= count or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.01)


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return (
        span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context.trace_id == parent.context.trace_id
    )


def within(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return parent.start_time <= span.start_time <= span.end_time <= parent.end_time


def text_values(span: ReadableSpan) -> list[str]:
    values = [v for v in span.attributes.values() if isinstance(v, str)]
    for event in span.events:
        values += [v for v in event.attributes.values() if isinstance(v, str)]
    return values + [span.name]


async def test_text_turn_gives_a_call_session_turn_stage_tree_without_text(traced, fake_openai):
    start, exporter = traced
    server, stub, channel = await start()
    fake_openai.chat_replies.append(REPLY)
    convo = Conversation(stub, config(input_rate=None))
    convo.send(text(USER))
    done = (await convo.until("turn_completed")).turn_completed
    assert done.agent_text == REPLY
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()) == grpc.StatusCode.OK
    session_id = convo.of("session_started")[0].session_id

    [call] = await finished(exporter, CONVERSE)
    spans = by_name(exporter)
    [session] = spans["voiceagent.session"]
    [turn] = spans["voiceagent.turn"]
    assert call.kind == SpanKind.SERVER and call.attributes["rpc.method"] == "Converse"
    assert child_of(session, call) and within(session, call)
    assert child_of(turn, session) and within(turn, session)
    providers = server.providers
    reason = session.attributes["voiceagent.session.end_reason"]
    assert type(reason) is str and reason in set(EndReason)  # as the store has it
    assert dict(session.attributes) == {
        "voiceagent.session.id": session_id,
        "voiceagent.tenant.id": "default",
        "voiceagent.session.resumed": False,
        "voiceagent.session.audio_input": False,
        "voiceagent.provider.stt": providers.stt.name,
        "voiceagent.provider.chat": providers.chat.name,
        "voiceagent.provider.tts": providers.tts.name,
        "voiceagent.edge": "grpc",
        "voiceagent.session.turns": 1,
        "voiceagent.session.end_reason": reason,
    }
    t = turn.attributes
    assert t["voiceagent.session.id"] == session_id and t["voiceagent.turn.index"] == 1
    assert t["voiceagent.turn.interrupted"] is False and t["voiceagent.turn.failed"] is False
    assert t["voiceagent.turn.input"] == "text" and t["voiceagent.turn.sentences"] == 2
    assert t["voiceagent.latency.llm_first_token_ms"] == done.latency.llm_first_token_ms
    assert t["voiceagent.latency.tts_first_byte_ms"] == done.latency.tts_first_byte_ms
    first_audio = done.latency.end_of_speech_to_first_audio_ms
    assert t["voiceagent.latency.end_of_speech_to_first_audio_ms"] == first_audio
    assert "voiceagent.latency.vad_stop_to_transcript_ms" not in t  # typed: no STT ran
    assert t["voiceagent.turn.audio_sent_ms"] == done.agent_audio_ms

    # A text turn has no transcription: llm, tts and output, each a child of the turn.
    assert "voiceagent.stt" not in spans
    [llm], [tts], [output] = (
        spans["voiceagent.llm"],
        spans["voiceagent.tts"],
        spans["voiceagent.output"],
    )
    for stage in (llm, tts, output):
        assert child_of(stage, turn) and within(stage, turn), stage.name
    assert llm.attributes["voiceagent.provider"] == providers.chat.name
    assert llm.attributes["voiceagent.llm.tokens"] == len(REPLY.split())  # the fake: a word a delta
    assert llm.attributes["voiceagent.llm.completed"] is True
    assert [e.name for e in llm.events] == ["first_token"]
    assert llm.start_time <= llm.events[0].timestamp <= llm.end_time
    assert tts.attributes["voiceagent.tts.sentences"] == 2
    assert tts.start_time >= llm.start_time and output.start_time >= tts.start_time
    assert output.end_time == turn.end_time  # the turn closes when its audio is all out

    # No user or agent words anywhere: not in an attribute, an event or a span name.
    words = {w.strip(".,").lower() for w in (USER + " " + REPLY).split() if len(w) > 3}
    for span in exporter.get_finished_spans():
        for value in text_values(span):
            assert not words & set(value.lower().replace(".", " ").split()), (span.name, value)

    # The interceptor also serves an async-generator streaming method, and skips health.
    chunks = [r async for r in stub.Synthesize(pb.SynthesizeRequest(text="Hi there."))]
    assert chunks
    [synth] = await finished(exporter, SYNTHESIZE)
    assert synth.attributes["rpc.grpc.status_code"] == 0
    health = health_pb2_grpc.HealthStub(channel)
    await health.Check(health_pb2.HealthCheckRequest())
    assert not [s for s in exporter.get_finished_spans() if "Health" in s.name]

    # A REST turn is a session of its own, on the "rest" edge.
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.http_port}", timeout=30
    ) as http:
        started = (await http.post("/conversation/start", json={"customer_id": "c1"})).json()
        reply = await http.post(
            "/conversation/process", json={"session_id": started["session_id"], "text": "hi"}
        )
        assert reply.status_code == 200, reply.text
    [*_, rest] = await finished(exporter, "voiceagent.session", 2)
    assert rest.attributes["voiceagent.edge"] == "rest"
    assert rest.attributes["voiceagent.session.id"] == started["session_id"]


async def test_spoken_turn_has_an_stt_span_and_trace_content_adds_the_words(traced, fake_openai):
    start, exporter = traced
    _, stub, _ = await start(trace_content=True)
    fake_openai.transcripts.append(USER)
    fake_openai.chat_replies.append(REPLY)
    convo = Conversation(stub, config())
    convo.send(*speech_requests("will it rain in lisbon tomorrow"))
    done = (await convo.until("turn_completed")).turn_completed
    convo.close_input()
    await convo.rest()

    [session] = await finished(exporter, "voiceagent.session")
    spans = by_name(exporter)
    [turn], [stt] = spans["voiceagent.turn"], spans["voiceagent.stt"]
    assert session.attributes["voiceagent.session.audio_input"] is True
    assert child_of(turn, session) and child_of(stt, turn) and within(stt, turn)
    assert stt.attributes["voiceagent.stt.audio_ms"] > 1000
    assert stt.end_time <= spans["voiceagent.llm"][0].start_time
    t = turn.attributes
    assert t["voiceagent.turn.input"] == "speech"
    assert t["voiceagent.latency.vad_stop_to_transcript_ms"] == (
        done.latency.vad_stop_to_transcript_ms
    )
    assert t["voiceagent.turn.user_text"] == USER
    assert t["voiceagent.turn.agent_text"] == REPLY
    assert t["voiceagent.turn.spoken_text"] == REPLY


def test_stages_cut_by_a_barge_in_end_when_the_turn_closed():
    turn = Turn(index=3, user_text="x", speech_end_at=10.0)
    turn.llm_request_at, turn.llm_first_token_at = 10.1, 10.3
    turn.tts_request_at, turn.tts_first_byte_at, turn.tts_done_at = 10.4, 10.5, 10.9
    turn.first_audio_at = 10.6
    turn.add_sentence("First one.").complete = True
    turn.add_sentence("Second, cut")  # still synthesizing
    turn.llm_pieces, turn.interrupted = 5, True  # llm_done_at unset: the stream was cut
    stages = {name: (begin, end, attrs) for name, begin, end, attrs, _ in traces.stages(
        turn, Providers(stt=None, chat=Named("chat"), tts=Named("tts")), closed_at=11.0
    )}  # fmt: skip
    assert set(stages) == {"voiceagent.llm", "voiceagent.tts", "voiceagent.output"}
    assert stages["voiceagent.llm"][:2] == (10.1, 11.0)
    assert stages["voiceagent.llm"][2]["voiceagent.llm.completed"] is False
    assert stages["voiceagent.llm"][2]["voiceagent.llm.first_token_ms"] == 200
    assert stages["voiceagent.tts"][:2] == (10.4, 11.0)  # not its last finished sentence
    assert stages["voiceagent.output"][:2] == (10.6, 11.0)
