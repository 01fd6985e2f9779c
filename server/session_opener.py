"""Opening a live session, the same way for every edge (gRPC, REST, WebSocket, WebRTC).

A session config (the proto `SessionConfig`) becomes a stored record (new, or resumed with its
history) and the stream's options; `running` then registers a `VoiceSession` in
`LiveSessions` and, on exit, closes it and saves where it got to. So limits, hang-up by
EndSession, graceful shutdown and persistence behave alike on every edge. Failures are
`InvalidRequest`s carrying a gRPC code, which each edge maps to its own form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
from voiceagent.v1 import converse_pb2

from pipeline.conversation import Conversation
from pipeline.providers.base import Providers
from pipeline.session import SessionOptions, VoiceSession
from pipeline.silero import SileroBatcher
from server import validation as check
from server.config import Settings
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions import (
    LiveSessions,
    SessionBusy,
    SessionRecord,
    SessionStore,
    ShuttingDown,
    TooManySessions,
)
from server.validation import InvalidRequest


class SessionOpener:
    def __init__(
        self,
        settings: Settings,
        providers: Providers,
        batcher: SileroBatcher,
        store: SessionStore,
        live: LiveSessions,
    ) -> None:
        self.settings, self.providers, self.batcher = settings, providers, batcher
        self.store, self.live = store, live

    async def open(
        self, config: converse_pb2.SessionConfig
    ) -> tuple[SessionRecord, SessionOptions, bool]:
        """Validate `config`; create or load its session. Returns (record, options, resumed)."""
        check.bounded_text(config.customer_id, "config.customer_id", check.MAX_NAME_CHARS)
        check.bounded_text(config.voice, "config.voice", check.MAX_NAME_CHARS)
        check.bounded_text(config.instructions, "config.instructions", check.MAX_INSTRUCTIONS_CHARS)
        input_format = (
            check.input_format(config.input_format, "config.input_format")
            if config.HasField("input_format")
            else None
        )
        options = SessionOptions(
            input_format=input_format,
            output_format=check.output_format(config.output_format, "config.output_format"),
            voice=config.voice or None,
            vad=check.vad_params(config.vad, self.settings),
            output_lead_ms=self.settings.output_lead_ms,
        )
        if not config.session_id:
            record = await self.store.create(
                config.customer_id,
                config.instructions or self.settings.instructions,
                config.voice or None,
            )
            return record, options, False
        record = await self.load(check.session_id(config.session_id))
        if config.instructions and config.instructions != record.instructions:
            self.store.instructions_changed(record, config.instructions)
        if options.voice is None and record.voice:
            options = dataclasses.replace(options, voice=record.voice)
        return record, options, True

    async def load(self, session_id: str) -> SessionRecord:
        """A stored session that can take a stream: NOT_FOUND, FAILED_PRECONDITION (ended) or
        UNAVAILABLE (database down, and not cached here) otherwise."""
        try:
            record = await self.store.get(session_id)
        except DB_DOWN as exc:
            raise InvalidRequest(
                f"cannot load session {session_id}: the database is unavailable ({exc})",
                grpc.StatusCode.UNAVAILABLE,
            ) from None
        if record is None:
            raise InvalidRequest(f"session {session_id} not found", grpc.StatusCode.NOT_FOUND)
        if record.ended_at is not None:
            raise InvalidRequest(
                f"session {record.id} has ended ({record.end_reason}); start a new one",
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        return record

    @asynccontextmanager
    async def running(
        self, record: SessionRecord, options: SessionOptions
    ) -> AsyncIterator[VoiceSession]:
        """A started, registered session on `record`; closed and saved on exit."""
        session = VoiceSession(
            record.id,
            self.providers,
            self.batcher,
            Conversation(record.instructions, record.history, record.next_turn_index),
            options,
            recorder=self.store.recorder(record),
        )
        try:
            self.live.add(session)
        except SessionBusy:
            raise InvalidRequest(
                f"session {record.id} is busy: it already has a live stream or request; "
                "end it first or retry when it has finished",
                grpc.StatusCode.FAILED_PRECONDITION,
            ) from None
        except ShuttingDown:
            raise InvalidRequest(
                "the server is shutting down; retry shortly", grpc.StatusCode.UNAVAILABLE
            ) from None
        except TooManySessions:
            raise InvalidRequest(
                f"the server is at its limit of {self.live.limit} live sessions; retry later",
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            ) from None
        session.start()
        try:
            yield session
        finally:
            await session.close()
            record.history = session.conversation.history
            record.next_turn_index = session.conversation.next_turn_index
            self.store.stream_closed(record, session.end_reason)
            self.live.remove(session)
