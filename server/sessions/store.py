"""Session records: cached in memory, kept in Postgres, written behind the live path.

The live path never waits for the database: a new session and everything that happens in it
reach Postgres through the write-behind writer, while this process keeps the record in a
bounded in-memory cache, so a session can be resumed here even while the database is down.
Reading a session this process does not hold goes to the database.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime

from pipeline.providers.base import ChatMessage
from pipeline.tools.lifecycle import ToolCall
from pipeline.turn import State, Turn
from server.persistence import queries, records
from server.persistence.database import Database
from server.persistence.writer import Write, WriteBehindWriter
from server.sessions.errors import Kind, RequestError

CACHE_SIZE = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC)


DEFAULT_TENANT = "default"


@dataclass
class SessionRecord:
    id: str
    customer_id: str
    instructions: str
    voice: str | None
    _: KW_ONLY
    tenant_id: str = DEFAULT_TENANT
    history: list[ChatMessage] = field(default_factory=list)
    next_turn_index: int = 1
    created_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    end_reason: str = ""


class SessionRecorder:
    """Hands one session's turns and state changes to the writer (called on the live path)."""

    def __init__(self, writer: WriteBehindWriter, session_id: str) -> None:
        self.writer, self.session_id = writer, session_id

    def turn_closed(self, turn: Turn, spoken: str) -> None:
        self.writer.submit(*records.turn_closed(self.session_id, turn, spoken, utcnow()))

    def state_changed(self, state: State) -> None:
        self.writer.submit(records.state_changed(self.session_id, state, utcnow()))

    def tool_call_done(self, call: ToolCall) -> None:
        self.writer.submit(records.tool_call_done(self.session_id, call, utcnow()))


class SessionStore:
    def __init__(self, db: Database, writer: WriteBehindWriter) -> None:
        self.db, self.writer = db, writer
        self._cache: OrderedDict[str, SessionRecord] = OrderedDict()

    def _remember(self, record: SessionRecord) -> SessionRecord:
        self._cache[record.id] = record
        self._cache.move_to_end(record.id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return record

    def _new(
        self,
        tenant_id: str,
        customer_id: str,
        instructions: str,
        voice: str | None,
        session_id: str | None,
    ) -> tuple[SessionRecord, list[Write]]:
        record = SessionRecord(
            session_id or str(uuid.uuid4()), customer_id, instructions, voice, tenant_id=tenant_id
        )
        config = {"voice": voice} if voice else {}
        writes = records.session_created(
            record.id, customer_id, instructions, voice, config, record.created_at, tenant_id
        )
        return record, writes

    def create(
        self, tenant_id: str, customer_id: str, instructions: str, voice: str | None
    ) -> SessionRecord:
        """A session opened by a live stream: recorded write-behind."""
        record, writes = self._new(tenant_id, customer_id, instructions, voice, None)
        self.writer.submit(*writes)
        return self._remember(record)

    async def create_now(
        self,
        tenant_id: str,
        customer_id: str,
        instructions: str,
        voice: str | None,
        session_id: str | None = None,
    ) -> SessionRecord:
        """A session created by request: durable before this returns. With `session_id`, under
        that id (idempotent: creating an existing id changes nothing)."""
        record, writes = self._new(tenant_id, customer_id, instructions, voice, session_id)
        await self.writer.flush(timeout=5)  # keep order with what is already queued
        await queries.write_now(self.db.pool, writes)
        if session_id and await queries.get_session(self.db.pool, session_id, tenant_id) is None:
            # The id exists, and is another tenant's: it is not this caller's to use.
            raise RequestError(f"session {session_id} not found", Kind.NOT_FOUND)
        return self._remember(record)

    async def get(self, session_id: str, tenant_id: str) -> SessionRecord | None:
        """The session if it is `tenant_id`'s: another tenant's session is not found here."""
        cached = self._cache.get(session_id)
        if cached is not None:
            return cached if cached.tenant_id == tenant_id else None
        row = await queries.get_session(self.db.pool, session_id, tenant_id)
        if row is None:
            return None
        history, next_index = await queries.load_history(self.db.pool, session_id, tenant_id)
        return self._remember(
            SessionRecord(
                id=str(row["id"]),
                customer_id=row["customer_id"] or "",
                instructions=row["instructions"],
                voice=row["voice"],
                tenant_id=tenant_id,
                history=history,
                next_turn_index=next_index,
                created_at=row["created_at"],
                ended_at=row["ended_at"],
                end_reason=row["end_reason"] or "",
            )
        )

    def recorder(self, record: SessionRecord) -> SessionRecorder:
        return SessionRecorder(self.writer, record.id)

    def disconnected(self, record: SessionRecord) -> None:
        """A stream on the session ended, the session stays resumable."""
        self.writer.submit(records.state_changed(record.id, State.DISCONNECTED, utcnow()))

    def instructions_changed(self, record: SessionRecord, instructions: str) -> None:
        record.instructions = instructions
        self.writer.submit(records.instructions_changed(record.id, instructions))

    def end(self, record: SessionRecord, reason: str) -> None:
        """Over for good (idempotent: the first reason stays)."""
        if record.ended_at is None:
            record.ended_at, record.end_reason = utcnow(), str(reason)
            self.writer.submit(records.session_ended(record.id, record.ended_at, str(reason)))
