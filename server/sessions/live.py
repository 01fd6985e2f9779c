"""The live-session registry: which sessions have a stream in this process right now.

One live stream per session (a second one is refused as busy), a limit on how many (the
server is full), and none once shutdown has begun. Every edge registers here through the
opener, so limits, EndSession hang-ups and graceful shutdown treat all edges alike.
"""

from __future__ import annotations

import asyncio

from pipeline.session import VoiceSession
from server.sessions.errors import Kind, RequestError


class LiveSessions:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.closed = False  # set when shutdown begins
        self._live: dict[str, VoiceSession] = {}
        self._tenants: dict[str, str] = {}  # session id -> its tenant
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._live

    def get(self, session_id: str, tenant_id: str | None = None) -> VoiceSession | None:
        """The live session (only if it is `tenant_id`'s, when given)."""
        if tenant_id is not None and self._tenants.get(session_id) != tenant_id:
            return None
        return self._live.get(session_id)

    def tenant_of(self, session_id: str) -> str | None:
        return self._tenants.get(session_id)

    def sessions(self, tenant_id: str | None = None) -> list[VoiceSession]:
        return [
            s for s in self._live.values() if tenant_id is None or self._tenants[s.id] == tenant_id
        ]

    def add(self, session: VoiceSession, tenant_id: str = "default") -> None:
        if self.closed:
            raise RequestError("the server is shutting down; retry shortly", Kind.UNAVAILABLE)
        if session.id in self._live:
            raise RequestError(
                f"session {session.id} is busy: it already has a live stream or request; "
                "end it first or retry when it has finished",
                Kind.CONFLICT,
            )
        if len(self._live) >= self.limit:
            raise RequestError(
                f"the server is at its limit of {self.limit} live sessions; retry later",
                Kind.EXHAUSTED,
            )
        self._live[session.id] = session
        self._tenants[session.id] = tenant_id
        self._empty.clear()

    def remove(self, session: VoiceSession) -> None:
        if self._live.get(session.id) is session:
            del self._live[session.id]
            del self._tenants[session.id]
        if not self._live:
            self._empty.set()

    async def wait_empty(self) -> None:
        await self._empty.wait()
