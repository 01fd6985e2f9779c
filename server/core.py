"""The session core: everything an edge needs, and nothing about any edge.

`Core` holds the settings, providers, the shared VAD batcher, the database and its writer,
the session store, the live registry, the opener and the reads, and `db_health` (whether the
database answers, for every edge's health report). Edges and routes receive a Core (never the
whole server), so a new edge is a thin peer of the others. `drain` is the graceful shutdown
of live sessions, the same for every edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from pipeline.providers.base import Providers
from pipeline.silero import SileroBatcher
from server.config import Settings
from server.persistence.database import Database
from server.persistence.supervisor import DatabaseHealth
from server.persistence.writer import WriteBehindWriter
from server.sessions.ending import EndReason
from server.sessions.live import LiveSessions
from server.sessions.opener import SessionOpener
from server.sessions.reads import SessionReads
from server.sessions.store import SessionStore

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Core:
    settings: Settings
    providers: Providers
    batcher: SileroBatcher
    db: Database
    db_health: DatabaseHealth
    writer: WriteBehindWriter
    store: SessionStore
    live: LiveSessions
    opener: SessionOpener
    reads: SessionReads

    @classmethod
    async def open(cls, settings: Settings, providers: Providers) -> Core:
        """Open the database (raises DatabaseUnavailable) and wire the core around it."""
        db = await Database.open(
            settings.database_url,
            settings.data_dir,
            settings.db_pool_size,
            supervise_interval=settings.db_check_interval_s,
        )
        db_health = DatabaseHealth(db, settings.db_check_interval_s)
        db_health.start()
        writer = WriteBehindWriter(db.pool, settings.db_writer_max_pending)
        writer.start()
        store = SessionStore(db, writer)
        live = LiveSessions(settings.max_sessions)
        batcher = SileroBatcher()
        opener = SessionOpener(
            settings=settings, providers=providers, batcher=batcher, store=store, live=live
        )
        return cls(
            settings=settings,
            providers=providers,
            batcher=batcher,
            db=db,
            db_health=db_health,
            writer=writer,
            store=store,
            live=live,
            opener=opener,
            reads=SessionReads(store, live),
        )

    def provider_names(self) -> dict[str, str]:
        p = self.providers
        return {"stt": p.stt.name, "chat": p.chat.name, "tts": p.tts.name}

    async def drain(self, grace: float) -> None:
        """Refuse new sessions, let live turns finish for `grace` seconds, then cut the rest.
        Every session is saved (resumable: the reason is SHUTDOWN) before this returns."""
        self.live.closed = True

        async def finish_turns() -> None:
            for session in self.live.sessions():
                session.end_reason = EndReason.SHUTDOWN
                await session.end_input()  # may wait on a stalled client: inside the grace
            await self.live.wait_empty()

        try:
            await asyncio.wait_for(finish_turns(), grace)
        except TimeoutError:
            log.warning("%d session(s) still live after %.1fs; cutting them", len(self.live), grace)
            for session in self.live.sessions():
                await session.close(reason=EndReason.SHUTDOWN)
            # Their edges' cleanup saves them; the writer must still be running for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.live.wait_empty(), 5.0)

    async def aclose(self) -> None:
        """After the edges have stopped: models, provider clients, then the writer's flush."""
        await self.batcher.aclose()
        await self.providers.aclose()
        await self.writer.close()
        await self.db_health.stop()
        await self.db.close()
