"""OpenTelemetry spans for live sessions: one per session, one per turn, one per stage.

    voiceagent.session                      (child of the gRPC call's span, if any)
      voiceagent.turn                       one per closed turn
        voiceagent.stt / .llm / .tts / .output

Why spans are made from the Turn's timestamps when the turn closes, instead of live spans
opened and closed inside the operators: the pipeline already records every instant a stage
starts and reaches its milestones (pipeline/turn.py), barge-in cancels stages in the middle
of awaits, and a turn's stages overlap (TTS speaks sentence 1 while the LLM writes sentence
2). Building the tree once, at `Conversation.close_turn`, with explicit start and end times,
keeps pipeline/ free of tracing code and costs nothing per audio frame. The spans are exact
to the recorded instants; they reach the exporter when the turn closes, not as it happens.

Privacy: no audio and no text in any attribute unless TRACE_CONTENT is on, which adds the
user's words and the agent's reply to the turn span.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from pipeline.providers.base import Providers
from pipeline.session import VoiceSession
from pipeline.turn import Turn, now

if TYPE_CHECKING:
    from server.sessions.opener import OpenedSession

log = logging.getLogger(__name__)
SESSION, TURN = "voiceagent.session", "voiceagent.turn"
STT, LLM, TTS, OUTPUT = "voiceagent.stt", "voiceagent.llm", "voiceagent.tts", "voiceagent.output"


def epoch_ns() -> Callable[[float], int]:
    """time.monotonic() seconds (the pipeline's clock) -> epoch nanoseconds (OpenTelemetry's),
    by the offset between the two clocks now."""
    offset = time.time_ns() - time.monotonic_ns()
    return lambda t: round(t * 1e9) + offset


class SessionTraces:
    """Makes a `SessionTrace` per live session; with no tracer (tracing off) an inert one,
    so the opener never checks and nothing is recorded."""

    def __init__(self, tracer: Tracer | None, providers: Providers, content: bool = False):
        self.tracer, self.providers, self.content = tracer, providers, content

    @classmethod
    def off(cls, providers: Providers) -> SessionTraces:
        return cls(None, providers)

    def start(self, session: VoiceSession, opened: OpenedSession) -> SessionTrace | NoTrace:
        if self.tracer is None:
            return NO_TRACE
        p = self.providers
        attributes: dict[str, AttributeValue] = {
            "voiceagent.session.id": session.id,
            "voiceagent.tenant.id": opened.record.tenant_id,
            "voiceagent.session.resumed": opened.resumed,
            "voiceagent.session.audio_input": opened.options.input_format is not None,
            "voiceagent.provider.stt": p.stt.name,
            "voiceagent.provider.chat": p.chat.name,
            "voiceagent.provider.tts": p.tts.name,
        }
        if opened.edge:
            attributes["voiceagent.edge"] = opened.edge
        # A child of the current span (the gRPC call's, when the interceptor is on); not made
        # current itself: WebRTC enters and leaves the session in different tasks.
        span = self.tracer.start_span(SESSION, kind=SpanKind.INTERNAL, attributes=attributes)
        return SessionTrace(self, session, span)


class NoTrace:
    def end(self, reason: str) -> None:
        pass


NO_TRACE = NoTrace()


class SessionTrace:
    """The session's span; each closed turn adds its subtree (hooked into the conversation's
    `on_turn_closed`, after whatever was there: the store's recorder)."""

    def __init__(self, traces: SessionTraces, session: VoiceSession, span: Span) -> None:
        self.traces, self.session, self.span = traces, session, span
        self.context = trace.set_span_in_context(span)
        self.turns = 0
        conversation = session.conversation
        previous = conversation.on_turn_closed

        def turn_closed(turn: Turn, said: str) -> None:
            if previous is not None:
                previous(turn, said)
            self.turn_closed(turn, said)

        conversation.on_turn_closed = turn_closed

    def end(self, reason: str) -> None:
        self.span.set_attribute("voiceagent.session.turns", self.turns)
        if reason:
            self.span.set_attribute("voiceagent.session.end_reason", str(reason))
        self.span.end()

    def turn_closed(self, turn: Turn, said: str) -> None:
        try:
            self._record(turn, said, now())
        except Exception:  # tracing must never break a turn
            log.exception("could not record the spans of turn %d", turn.index)

    def _record(self, turn: Turn, said: str, closed_at: float) -> None:
        self.turns += 1
        ns = epoch_ns()
        tracer, p = self.traces.tracer, self.traces.providers
        assert tracer is not None
        attributes: dict = {
            "voiceagent.session.id": self.session.id,
            "voiceagent.turn.index": turn.index,
            "voiceagent.turn.interrupted": turn.interrupted,
            "voiceagent.turn.failed": turn.failed,
            "voiceagent.turn.input": "speech" if turn.vad_stop_at is not None else "text",
            "voiceagent.turn.sentences": len(turn.sentences),
            "voiceagent.turn.audio_generated_ms": round(turn.audio_generated_ms),
            "voiceagent.turn.audio_sent_ms": round(turn.audio_sent_ms),
        }
        for name, ms in turn.latency_ms().items():
            if ms >= 0:
                attributes[f"voiceagent.latency.{name}"] = ms
        if self.traces.content:
            attributes["voiceagent.turn.user_text"] = turn.user_text
            attributes["voiceagent.turn.agent_text"] = turn.agent_text
            attributes["voiceagent.turn.spoken_text"] = said
        start = min(t for t in (turn.speech_end_at, turn.vad_stop_at) if t is not None)
        span = tracer.start_span(TURN, self.context, attributes=attributes, start_time=ns(start))
        if turn.failed:
            span.set_status(Status(StatusCode.ERROR, "a provider failed during this turn"))
        parent = trace.set_span_in_context(span)
        for name, begin, end, attrs, events in stages(turn, p, closed_at):
            child = tracer.start_span(name, parent, attributes=attrs, start_time=ns(begin))
            for event, at in events:
                child.add_event(event, timestamp=ns(at))
            child.end(end_time=ns(max(begin, end)))
        span.end(end_time=ns(closed_at))


Stage = tuple[str, float, float, dict, list[tuple[str, float]]]


def _ms(start: float, end: float) -> int:
    return round((end - start) * 1000)


def stages(turn: Turn, p: Providers, closed_at: float) -> list[Stage]:
    """(name, start, end, attributes, events) of each stage the turn went through; a stage
    cut by a barge-in (or still running at close) ends when the turn closed."""
    out: list[Stage] = []
    if turn.vad_stop_at is not None and turn.transcript_at is not None:
        audio_ms = (turn.end_offset_ms or 0) - (turn.start_offset_ms or 0)
        attrs = {"voiceagent.provider": p.stt.name, "voiceagent.stt.audio_ms": max(0, audio_ms)}
        out.append((STT, turn.vad_stop_at, turn.transcript_at, attrs, []))
    if turn.llm_request_at is not None:
        attrs = {
            "voiceagent.provider": p.chat.name,
            "voiceagent.llm.tokens": turn.llm_pieces,
            "voiceagent.llm.completed": turn.llm_done_at is not None,
        }
        events = []
        if turn.llm_first_token_at is not None:
            attrs["voiceagent.llm.first_token_ms"] = _ms(
                turn.llm_request_at, turn.llm_first_token_at
            )
            events.append(("first_token", turn.llm_first_token_at))
        end = turn.llm_done_at if turn.llm_done_at is not None else closed_at
        out.append((LLM, turn.llm_request_at, end, attrs, events))
    if turn.tts_request_at is not None:
        attrs = {"voiceagent.provider": p.tts.name, "voiceagent.tts.sentences": len(turn.sentences)}
        events = []
        if turn.tts_first_byte_at is not None:
            attrs["voiceagent.tts.first_byte_ms"] = _ms(turn.tts_request_at, turn.tts_first_byte_at)
            events.append(("first_byte", turn.tts_first_byte_at))
        cut = not all(s.complete for s in turn.sentences)
        end = closed_at if cut or turn.tts_done_at is None else turn.tts_done_at
        out.append((TTS, turn.tts_request_at, end, attrs, events))
    if turn.first_audio_at is not None:
        attrs = {"voiceagent.output.audio_sent_ms": round(turn.audio_sent_ms)}
        out.append((OUTPUT, turn.first_audio_at, closed_at, attrs, []))
    return out
