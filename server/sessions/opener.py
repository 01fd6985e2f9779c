"""Opening a live session, the same way for every edge (gRPC, REST, WebSocket, WebRTC).

An edge decodes its own wire format into a `SessionRequest` (a plain dataclass) once; `open`
checks it and creates or loads the stored session; `running` registers a started
`VoiceSession` in the live registry and, on exit, closes it, saves where it got to and applies
the one end policy (`EndReason.final`). So limits, hang-up by EndSession, graceful shutdown
and persistence behave alike on every edge. Failures are `RequestError`s with a neutral `Kind`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from voiceagent.v1 import converse_pb2

from pipeline.audio import PcmFormat
from pipeline.conversation import Conversation
from pipeline.providers.base import Providers
from pipeline.session import SessionOptions, VoiceSession
from pipeline.silero import SileroBatcher
from pipeline.vad import VadParams
from server.config import Settings
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions import checks
from server.sessions.ending import EndReason
from server.sessions.errors import Kind, RequestError
from server.sessions.live import LiveSessions
from server.sessions.store import SessionRecord, SessionStore


@dataclass(frozen=True, kw_only=True)
class SessionRequest:
    """What a client asks for when it opens a stream, whatever edge it came in on."""

    session_id: str = ""  # a stored (canonical) id to resume; "" = a new session
    create_missing: bool = False  # resume, or create under `session_id` if it does not exist
    customer_id: str = ""
    instructions: str = ""  # "" = the session's own, or the server's default
    voice: str = ""
    input_format: PcmFormat | None = None  # None: text (and whole utterances) only
    output_format: PcmFormat = checks.DEFAULT_OUTPUT
    vad: VadParams | None = None  # None: the server's defaults
    output_lead_ms: float | None = None  # None: the server's OUTPUT_LEAD_MS
    speak: bool = True  # False: text replies only, no TTS work


@dataclass(frozen=True)
class OpenedSession:
    record: SessionRecord
    options: SessionOptions
    resumed: bool


class SessionOpener:
    def __init__(
        self,
        *,
        settings: Settings,
        providers: Providers,
        batcher: SileroBatcher,
        store: SessionStore,
        live: LiveSessions,
    ) -> None:
        self.settings, self.providers, self.batcher = settings, providers, batcher
        self.store, self.live = store, live

    async def open(self, request: SessionRequest) -> OpenedSession:
        """Check `request`; create or load its session."""
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
        )
        if not request.session_id:
            record = self.store.create(
                request.customer_id,
                request.instructions or settings.instructions,
                request.voice or None,
            )
            return OpenedSession(record, options, False)
        resumed = True
        if request.create_missing:
            resumed = not await self._ensure(request.session_id, request.customer_id)
        record = await self.load(request.session_id)
        if request.instructions and request.instructions != record.instructions:
            self.store.instructions_changed(record, request.instructions)
        if options.voice is None and record.voice:
            options = dataclasses.replace(options, voice=record.voice)
        return OpenedSession(record, options, resumed)

    async def create(self, customer_id: str, instructions: str, voice: str) -> SessionRecord:
        """A new session by request (no stream yet), durable before this returns."""
        return await self.store.create_now(
            customer_id, instructions or self.settings.instructions, voice or None
        )

    async def _ensure(self, session_id: str, customer_id: str) -> bool:
        """Create the session under this exact id unless it exists; True if it was created.
        Idempotent (the insert is ON CONFLICT DO NOTHING), so racing connections agree."""
        try:
            if await self.store.get(session_id) is not None:
                return False
            await self.store.create_now(customer_id, self.settings.instructions, None, session_id)
        except DB_DOWN as exc:
            raise RequestError(
                f"cannot open session {session_id}: the database is unavailable ({exc})",
                Kind.UNAVAILABLE,
            ) from None
        return True

    async def load(self, session_id: str) -> SessionRecord:
        """A stored session that can take a stream: NOT_FOUND, CONFLICT (ended) or
        UNAVAILABLE (database down, and not cached here) otherwise."""
        try:
            record = await self.store.get(session_id)
        except DB_DOWN as exc:
            raise RequestError(
                f"cannot load session {session_id}: the database is unavailable ({exc})",
                Kind.UNAVAILABLE,
            ) from None
        if record is None:
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
        )
        self.live.add(session)
        session.start()
        try:
            yield session
        finally:
            await session.close()
            record.history = session.conversation.history
            record.next_turn_index = session.conversation.next_turn_index
            reason = EndReason.of(session.end_reason)
            if reason.final:
                self.store.end(record, reason)
            else:
                self.store.disconnected(record)
            self.live.remove(session)

    async def hang_up(self, record: SessionRecord, reason: str) -> None:
        """End a session for good (EndSession, admin): its live stream, if any, is closed."""
        self.store.end(record, reason or EndReason.ENDED_BY_REQUEST)
        live = self.live.get(record.id)
        if live is not None:
            await live.close(reason=EndReason.HANG_UP)
