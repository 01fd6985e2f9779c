"""The session core: everything an edge needs, and nothing about any edge.

`Core` holds the settings, providers, the shared VAD batcher, the database and its writer,
the session store, the live registry, the opener, the reads, the authenticator, and
`db_health` (whether the database answers, for every edge's health report). Edges and routes
receive a Core (never the whole server), so a new edge is a thin peer of the others. `drain`
is the graceful shutdown of live sessions, the same for every edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from pipeline.providers.base import Providers
from pipeline.silero import SileroBatcher
from pipeline.watchdog import DeadAirCounts
from server.auth.authenticator import Authenticator
from server.config import Settings
from server.observe import metrics
from server.persistence.database import Database
from server.persistence.supervisor import DatabaseHealth
from server.persistence.writer import WriteBehindWriter
from server.recordings.service import Recordings
from server.sessions.ending import EndReason
from server.sessions.live import LiveSessions
from server.sessions.opener import SessionOpener
from server.sessions.reads import SessionReads
from server.sessions.store import SessionStore
from server.sessions.tools import ToolCatalog

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
    auth: Authenticator
    recordings: Recordings
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def open(cls, settings: Settings, providers: Providers) -> Core:
        """Open the database (raises DatabaseUnavailable) and wire the core around it."""
        recordings = Recordings(settings)  # first: a bad RECORDING_HOOK fails before the DB
        tools = ToolCatalog(settings)  # and a bad TOOLS_FILE
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
            settings=settings,
            providers=providers,
            batcher=batcher,
            store=store,
            live=live,
            tools=tools,
        )
        opener.recordings = recordings
        opener.on_dead_air = DeadAirCounts(then=metrics.dead_air)  # voiceagent_dead_air_total
        secret = settings.auth_token_secret
        auth = await Authenticator.open(
            db.pool,
            secret=secret.get_secret_value() if secret else None,
            require_auth=settings.require_auth,
        )
        core = cls(
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
            auth=auth,
            recordings=recordings,
        )
        core._tasks.append(asyncio.create_task(auth.run(), name="auth-refresh"))
        core._tasks.append(asyncio.create_task(metrics.sample_writer(writer), name="metrics"))
        if settings.session_idle_timeout_s > 0:
            core._tasks.append(asyncio.create_task(core._close_idle(), name="idle-sessions"))
        if settings.recording_retention_days > 0:
            core._tasks.append(
                asyncio.create_task(recordings.run_retention(), name="recording-retention")
            )
        return core

    def provider_names(self) -> dict[str, str]:
        p = self.providers
        return {"stt": p.stt.name, "chat": p.chat.name, "tts": p.tts.name}

    async def _close_idle(self) -> None:
        """Close live sessions with no input and no agent activity for SESSION_IDLE_TIMEOUT_S,
        so idle callers do not hold session slots; they stay resumable (EndReason.IDLE)."""
        timeout = self.settings.session_idle_timeout_s
        period = min(5.0, max(0.05, timeout / 4))
        while True:
            await asyncio.sleep(period)
            at = time.monotonic()
            for session in self.live.sessions():
                if session.idle_s(at) >= timeout and not session.end_reason:
                    log.info("session %s idle for %.0fs: closing it", session.id, timeout)
                    await session.close(reason=EndReason.IDLE)

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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.recordings.aclose()  # every stream has ended: finish their files
        await self.opener.tools.aclose()
        await self.batcher.aclose()
        await self.providers.aclose()
        await self.writer.close()
        await self.db_health.stop()
        await self.db.close()
