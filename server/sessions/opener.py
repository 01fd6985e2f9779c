"""Opening a live session, the same way for every edge (gRPC, REST, WebSocket, WebRTC).

An edge decodes its own wire format into a `SessionRequest` (a plain dataclass) once; `open`
checks it and creates or loads the stored session; `running` registers a started
`VoiceSession` in the live registry and, on exit, closes it, saves where it got to and applies
the one end policy (`EndReason.final`). So limits, hang-up by EndSession, graceful shutdown
and persistence behave alike on every edge. Failures are `RequestError`s with a neutral `Kind`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from voiceagent.v1 import converse_pb2

from pipeline.conversation import Conversation
from pipeline.dead_air import DeadAirParams
from pipeline.providers.base import Providers
from pipeline.session import SessionOptions, VoiceSession
from pipeline.silero import SileroBatcher
from pipeline.watchdog import DeadAirCounts, DeadAirWatchdog
from server.auth.caller import CONVERSE, Caller
from server.cluster.leases import busy
from server.cluster.plane import ControlPlane
from server.config import Settings
from server.observe.sessions import SessionWatch
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.recordings.service import Recordings
from server.sessions import checks
from server.sessions.ending import EndReason
from server.sessions.errors import Kind, RequestError
from server.sessions.limits import TenantAdmission, TenantLimits
from server.sessions.live import LiveSessions
from server.sessions.request import OpenedSession, SessionRequest
from server.sessions.store import SessionRecord, SessionStore
from server.sessions.tenant_limits import TenantLimitsLookup
from server.sessions.tools import ToolCatalog
from server.sessions.traces import SessionTraces

log = logging.getLogger(__name__)
__all__ = ["OpenedSession", "SessionOpener", "SessionRequest"]


class SessionOpener:
    def __init__(
        self,
        *,
        settings: Settings,
        providers: Providers,
        batcher: SileroBatcher,
        store: SessionStore,
        live: LiveSessions,
        traces: SessionTraces | None = None,
        recordings: Recordings | None = None,
        cluster: ControlPlane | None = None,
        tools: ToolCatalog | None = None,
    ) -> None:
        self.settings, self.providers, self.batcher = settings, providers, batcher
        self.tools = tools or ToolCatalog(settings)
        self.store, self.live = store, live
        self.traces = traces or SessionTraces.off(providers)
        self.recordings = recordings
        self.cluster = cluster  # None: this process alone (no leases, local limits only)
        self.admission = TenantAdmission()
        self._limits = TenantLimitsLookup(settings, store.db)
        self.dead_air = DeadAirParams(
            reply_s=settings.dead_air_reply_s,
            stage_s=settings.dead_air_stage_s,
            recovery_text=settings.dead_air_recovery_text,
        )
        # Told the stage ("stt", "chat", "tts", "output", "pipeline") of every dead-air stall;
        # metrics hook in here. By default, counted in `on_dead_air.counts`.
        self.on_dead_air: Callable[[str], None] = DeadAirCounts()

    async def open(self, request: SessionRequest) -> OpenedSession:
        """Check `request` (and that its caller may converse on it); create or load its
        session, in the caller's tenant."""
        caller = request.caller
        caller.require(CONVERSE, request.session_id)
        tenant = caller.tenant_id
        checks.bounded_text(request.customer_id, "customer_id", checks.MAX_NAME_CHARS)
        checks.bounded_text(request.voice, "voice", checks.MAX_NAME_CHARS)
        checks.bounded_text(request.instructions, "instructions", checks.MAX_INSTRUCTIONS_CHARS)
        settings = self.settings
        options = SessionOptions(
            input_format=request.input_format,
            output_format=request.output_format,
            voice=request.voice or None,
            vad=request.vad or checks.vad_params(settings),
            output_lead_ms=(
                settings.output_lead_ms
                if request.output_lead_ms is None
                else request.output_lead_ms
            ),
            speak=request.speak,
            eager_stt=settings.stt_eager,
            tools=self.tools.options(request.tools, request.tool_sets, request.tool_choice),
        )
        if not request.session_id:
            record = self.store.create(
                tenant,
                request.customer_id,
                request.instructions or settings.instructions,
                request.voice or None,
            )
            return OpenedSession(
                record, options, False, caller=caller, edge=request.edge, recording=request.record
            )
        resumed = True
        if request.create_missing:
            resumed = not await self._ensure(tenant, request.session_id, request.customer_id)
        record = await self.load(request.session_id, tenant)
        if request.instructions and request.instructions != record.instructions:
            self.store.instructions_changed(record, request.instructions)
        if options.voice is None and record.voice:
            options = dataclasses.replace(options, voice=record.voice)
        return OpenedSession(
            record, options, resumed, caller=caller, edge=request.edge, recording=request.record
        )

    async def create(
        self, caller: Caller, customer_id: str, instructions: str, voice: str
    ) -> SessionRecord:
        """A new session by request (no stream yet), durable before this returns."""
        caller.require(CONVERSE)
        return await self.store.create_now(
            caller.tenant_id, customer_id, instructions or self.settings.instructions, voice or None
        )

    async def _ensure(self, tenant: str, session_id: str, customer_id: str) -> bool:
        """Create the session under this exact id unless it exists; True if it was created.
        Idempotent (the insert is ON CONFLICT DO NOTHING), so racing connections agree."""
        try:
            if await self.store.get(session_id, tenant) is not None:
                return False
            await self.store.create_now(
                tenant, customer_id, self.settings.instructions, None, session_id
            )
        except DB_DOWN as exc:
            raise RequestError(
                f"cannot open session {session_id}: the database is unavailable ({exc})",
                Kind.UNAVAILABLE,
            ) from None
        return True

    async def load(self, session_id: str, tenant: str) -> SessionRecord:
        """A stored session of `tenant` that can take a stream: NOT_FOUND (also for another
        tenant's), CONFLICT (ended) or UNAVAILABLE (database down, not cached) otherwise."""
        try:
            record = await self.store.get(session_id, tenant)
        except DB_DOWN as exc:
            raise RequestError(
                f"cannot load session {session_id}: the database is unavailable ({exc})",
                Kind.UNAVAILABLE,
            ) from None
        if record is None:
            if self.cluster is not None:  # live in another process, and not stored yet
                lease = await self.cluster.holder(session_id)
                if lease is not None and lease.tenant_id == tenant:
                    raise busy(session_id)
            raise RequestError(f"session {session_id} not found", Kind.NOT_FOUND)
        if record.ended_at is not None:
            raise RequestError(
                f"session {record.id} has ended ({record.end_reason}); start a new one",
                Kind.CONFLICT,
            )
        return record

    def started(self, opened: OpenedSession) -> converse_pb2.SessionStarted:
        """The first event of every stream: which session, its audio out, who serves it."""
        p = self.providers
        return converse_pb2.SessionStarted(
            session_id=opened.record.id,
            resumed=opened.resumed,
            output_format={
                "encoding": "AUDIO_ENCODING_LINEAR16",
                "sample_rate_hz": opened.options.output_format.sample_rate,
                "channels": 1,
            },
            providers=converse_pb2.ProviderInfo(stt=p.stt.name, chat=p.chat.name, tts=p.tts.name),
        )

    @asynccontextmanager
    async def running(self, opened: OpenedSession) -> AsyncIterator[VoiceSession]:
        """A started, registered session; closed, saved and ended (or not) on exit."""
        record = opened.record
        session = VoiceSession(
            record.id,
            self.providers,
            self.batcher,
            Conversation(record.instructions, record.history, record.next_turn_index),
            opened.options,
            recorder=self.store.recorder(record),
            webhook=self.tools.webhook,
        )
        session.tools.context["tenant_id"] = record.tenant_id  # webhooks learn whose call it is
        tenant = record.tenant_id
        limits = await self.limits(tenant)
        # Tenant limits bound authenticated callers; with authentication off (a loopback dev
        # server) only MAX_SESSIONS applies.
        admitted = bool(opened.caller.key_id)
        if admitted:
            self.admission.admit(tenant, limits)
        try:
            self.live.add(session, tenant)
        except RequestError:
            if admitted:
                self.admission.release(tenant)
            raise
        if self.cluster is not None:  # the same checks, cluster-wide, and the session's lease
            try:
                await self.cluster.claim(
                    record.id, tenant, opened.edge, limits if admitted else None
                )
            except BaseException:
                self.live.remove(session)
                if admitted:
                    self.admission.release(tenant)
                raise
        watch = SessionWatch(session, edge=opened.edge, tenant=tenant)  # metrics, log context
        traced = self.traces.start(session, opened)
        session.start()
        tap = self.recordings and self.recordings.attach(
            session, tenant_id=tenant, session_id=record.id, requested=opened.recording,
            options=opened.options,
        )  # fmt: skip
        cap = asyncio.create_task(self._cap(session, limits.max_session_s), name=f"cap:{record.id}")
        # Before the stages first run (no await since start): it wraps their providers.
        watchdog = DeadAirWatchdog.start(session, self.dead_air, self.on_dead_air)
        try:
            yield session
        finally:
            cap.cancel()  # not awaited: nothing may delay freeing the slot below
            if watchdog is not None:
                watchdog.cancel()
            if admitted:
                self.admission.release(tenant)
            await session.close()
            traced.end(EndReason.of(session.end_reason))
            if tap and self.recordings is not None:
                self.recordings.detach(tap)
            record.history = session.conversation.history
            record.next_turn_index = session.conversation.next_turn_index
            reason = EndReason.of(session.end_reason)
            if reason.final:
                self.store.end(record, reason)
            else:
                self.store.disconnected(record)
            self.live.remove(session)
            watch.detach()
            if self.cluster is not None:
                self.cluster.release(record.id)  # once the records above are stored
                await self.cluster.released(record.id)  # before the edge answers or ends

    async def end_session(self, session_id: str, tenant: str, reason: str) -> SessionRecord | None:
        """EndSession: end the stored session of `tenant` for good and close its live stream,
        here or in the server process that owns it (None: no such session). A session just
        started elsewhere may not be stored yet: its owner ends it and stores it first."""
        record = await self.store.get(session_id, tenant)
        lease = None
        if self.cluster is not None and self.live.get(session_id, tenant) is None:
            lease = await self.cluster.holder(session_id)
            if lease is not None and (
                lease.owner_id == self.cluster.owner_id or lease.tenant_id != tenant
            ):
                lease = None
        if lease is not None and self.cluster is not None:
            args = {"session_id": session_id, "tenant_id": tenant, "reason": reason}
            if await self.cluster.tell_owner(lease, "end", args):  # acts, stores, then answers
                self.store.forget(session_id)
                record = await self.store.get(session_id, tenant)
        if record is not None:
            await self.hang_up_here(record, reason)  # idempotent: the first reason stays
        return record

    async def hang_up_here(self, record: SessionRecord, reason: str) -> bool:
        """End a session for good in this process (EndSession, admin): its live stream here,
        if any, is closed; True if there was one."""
        self.store.end(record, reason or EndReason.ENDED_BY_REQUEST)
        live = self.live.get(record.id, record.tenant_id)
        if live is not None:
            await live.close(reason=EndReason.HANG_UP)
        return live is not None

    async def _cap(self, session: VoiceSession, max_s: float) -> None:
        """End a live session at its maximum duration, warning the client first."""
        warn_s = min(self.settings.session_expiry_warning_s, max_s)
        await asyncio.sleep(max_s - warn_s)
        if warn_s > 0:
            await session.events.session_expiring(round(warn_s))
            await asyncio.sleep(warn_s)
        log.info("session %s reached its maximum duration (%.0f s)", session.id, max_s)
        await session.close(reason=EndReason.MAX_DURATION)

    async def limits(self, tenant: str) -> TenantLimits:
        """The tenant's limits (tenant_limits.py)."""
        return await self._limits.get(tenant)
