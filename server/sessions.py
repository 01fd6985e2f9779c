"""Session records and the live-session registry.

`MemorySessionStore` keeps records for the life of the process; the Postgres store of the
persistence issue implements the same methods. `LiveSessions` knows which sessions have a
stream right now: it enforces one stream per session and the process-wide limit, and lets
shutdown (and tests) wait until every stream has cleaned up.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.providers.base import ChatMessage
from pipeline.session import VoiceSession


@dataclass
class SessionRecord:
    id: str
    customer_id: str
    instructions: str
    voice: str | None
    history: list[ChatMessage] = field(default_factory=list)
    next_turn_index: int = 1
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None
    end_reason: str = ""


class MemorySessionStore:
    def __init__(self) -> None:
        self._records: dict[str, SessionRecord] = {}

    async def create(self, customer_id: str, instructions: str, voice: str | None) -> SessionRecord:
        record = SessionRecord(str(uuid.uuid4()), customer_id, instructions, voice)
        self._records[record.id] = record
        return record

    async def get(self, session_id: str) -> SessionRecord | None:
        return self._records.get(session_id)

    async def save(self, record: SessionRecord) -> None:
        self._records[record.id] = record


class SessionBusy(Exception):
    """The session already has a live stream."""


class TooManySessions(Exception):
    pass


class LiveSessions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._live: dict[str, VoiceSession] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live

    def sessions(self) -> list[VoiceSession]:
        return list(self._live.values())

    def add(self, session: VoiceSession) -> None:
        if session.id in self._live:
            raise SessionBusy(session.id)
        if len(self._live) >= self.limit:
            raise TooManySessions(self.limit)
        self._live[session.id] = session
        self._empty.clear()

    def remove(self, session: VoiceSession) -> None:
        if self._live.get(session.id) is session:
            del self._live[session.id]
        if not self._live:
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()
