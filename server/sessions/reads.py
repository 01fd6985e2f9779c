"""Reading stored sessions and transcripts, for SessionService and the REST /sessions routes.

Reads are read-your-writes: they first wait briefly for the writer to flush what was queued
before them, so a turn that just completed is listed. Database outages and bad page tokens
become `RequestError`s, so each edge reports them in its own form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import asyncpg

from server.persistence import queries
from server.persistence.queries import BadPageToken
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions.errors import Kind, RequestError
from server.sessions.live import LiveSessions
from server.sessions.store import SessionStore

MAX_PAGE = 500
READ_FLUSH_S = 2.0  # reads first wait this long for queued writes (read-your-writes)
T = TypeVar("T")


@contextmanager
def database_errors() -> Iterator[None]:
    """Around database reads and writes: an outage is UNAVAILABLE with the cause."""
    try:
        yield
    except DB_DOWN as exc:
        raise RequestError(
            f"the database is unavailable: {type(exc).__name__}: {exc}", Kind.UNAVAILABLE
        ) from None
    except BadPageToken as exc:
        raise RequestError(str(exc)) from None


class SessionReads:
    def __init__(self, store: SessionStore, live: LiveSessions) -> None:
        self.store, self.live = store, live

    async def _read(self, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        with database_errors():
            await self.store.writer.flush(READ_FLUSH_S)
            return await query(self.store.db.pool)

    async def session(
        self, tenant_id: str, session_id: str, shown_id: str | None = None
    ) -> asyncpg.Record:
        """The row of a stored session of `tenant_id` (`session_id` canonical); NOT_FOUND,
        naming `shown_id`, for an unknown id and for another tenant's."""
        row = await self._read(lambda pool: queries.get_session(pool, session_id, tenant_id))
        if row is None:
            raise RequestError(f"session {shown_id or session_id} not found", Kind.NOT_FOUND)
        return row

    async def sessions(
        self, tenant_id: str, customer_id: str, page_size: int, page_token: str
    ) -> tuple[list[asyncpg.Record], str]:
        return await self._read(
            lambda pool: queries.list_sessions(pool, tenant_id, customer_id, page_size, page_token)
        )

    async def turns(
        self,
        tenant_id: str,
        session_id: str,
        page_size: int,
        page_token: str,
        shown_id: str | None = None,
    ) -> tuple[list[dict], str]:
        row = await self.session(tenant_id, session_id, shown_id)
        with database_errors():
            return await queries.list_turns(
                self.store.db.pool, str(row["id"]), tenant_id, page_size, page_token
            )

    def is_live(self, session_id: str) -> bool:
        return session_id in self.live
