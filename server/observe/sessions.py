"""One live session, watched: its metrics by edge, and its log context.

Why a separate object: the opener (shared by every edge, and by several features at once)
only calls `SessionWatch(session, edge=..., tenant=...)` once the session is registered and
`detach()` once it is not. Everything this needs from the pipeline comes through its neutral
hooks, chained so that whoever hooked in first (persistence) still runs first:
`Conversation.on_turn_closed` (turns, stage latencies, from Turn.latency_ms() as the turn
closes), `EventSink.on_event` (agent audio out, barge-ins) and `VoiceSession.on_audio_in`
(caller audio in). pipeline/ knows nothing of Prometheus.
"""

from __future__ import annotations

import logging

from pipeline.events import OUTCOME_NAMES, Event
from pipeline.session import VoiceSession
from pipeline.turn import Turn
from server.observe import logcontext, metrics

log = logging.getLogger(__name__)
FRAMES_PER_INC = 50


class SessionWatch:
    def __init__(self, session: VoiceSession, *, edge: str, tenant: str) -> None:
        self.session, self.tenant = session, tenant
        self.edge = metrics.edge_label(edge)
        # Children resolved once: the per-event path is a plain increment.
        self._live = metrics.LIVE_SESSIONS.labels(self.edge)
        self._turns = metrics.TURNS.labels(self.edge)
        self._interruptions = metrics.INTERRUPTIONS.labels(self.edge)
        self._frames_in = metrics.FRAMES_IN.labels(self.edge)
        self._uncounted_frames = 0
        self._frames_out = metrics.FRAMES_OUT.labels(self.edge)
        self._latency = {
            key: metrics.STAGE_LATENCY.labels(stage, self.edge)
            for key, stage in metrics.STAGES.items()
        }
        self._attached = True
        conversation = session.conversation
        self._next_turn_closed = conversation.on_turn_closed
        conversation.on_turn_closed = self._turn_closed
        self._next_event = session.events.on_event
        session.events.on_event = self._event
        self._next_audio_in = session.on_audio_in
        session.on_audio_in = self._audio_in
        self._live.inc()
        metrics.SESSIONS_STARTED.labels(self.edge).inc()
        logcontext.bind(
            logcontext.LogContext(session.id, edge=self.edge, tenant=tenant, turn=self.turn)
        )
        log.info("session %s live on %s", session.id, self.edge, extra=self._fields())

    def turn(self) -> int | None:
        """The turn in flight, for log lines."""
        live = self.session.conversation.live
        return live.index if live is not None and not live.closed else None

    def detach(self) -> None:
        """The session is no longer live (idempotent)."""
        if self._attached:
            self._attached = False
            self._count_frames()  # before the live gauge drops: a scrape then sees them all
            self._live.dec()
            reason = self.session.end_reason or "input ended"
            log.info("session %s no longer live: %s", self.session.id, reason, extra=self._fields())

    def _fields(self, turn: int | None = None) -> dict[str, object]:
        # Explicit, for lines logged from a task that may not carry the session's context
        # (a WebRTC call ends in its own teardown task).
        return {"session_id": self.session.id, "turn": turn, "edge": self.edge,
                "tenant": self.tenant}  # fmt: skip

    def _turn_closed(self, turn: Turn, spoken: str) -> None:
        if self._next_turn_closed is not None:
            self._next_turn_closed(turn, spoken)
        self._turns.inc()
        latency = turn.latency_ms()
        for key, ms in latency.items():
            histogram = self._latency.get(key)
            if histogram is not None and ms >= 0:  # -1: the turn never reached that stage
                histogram.observe(ms / 1000)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("turn %d closed%s: %s", turn.index,
                      " (interrupted)" if turn.interrupted else "", latency,
                      extra=self._fields(turn.index))  # fmt: skip

    def _event(self, event: Event) -> None:
        if self._next_event is not None:
            self._next_event(event)
        kind = event.WhichOneof("event")
        if kind == "agent_audio":
            self._frames_out.inc()
        elif kind == "interrupted":  # only a barge-in sends it; a hang-up mid-turn does not
            self._interruptions.inc()
        elif kind == "tool_call_done":
            metrics.tool_call(OUTCOME_NAMES.get(event.tool_call_done.outcome, "unspecified"))

    def _audio_in(self, size: int) -> None:
        if self._next_audio_in is not None:
            self._next_audio_in(size)
        # Counted here and added to the counter once a second of 20 ms frames (and when the
        # session ends): a Prometheus increment per frame was a visible share of frame CPU.
        self._uncounted_frames += 1
        if self._uncounted_frames >= FRAMES_PER_INC:
            self._count_frames()

    def _count_frames(self) -> None:
        if self._uncounted_frames:
            self._frames_in.inc(self._uncounted_frames)
            self._uncounted_frames = 0
