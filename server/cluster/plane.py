"""The control plane: many server processes on one Postgres behave as one server.

Why: each process has its own live registry (`LiveSessions`); this plane makes that registry
cluster-wide. Going live claims the session's lease (admission against cluster-wide limits,
server/cluster/leases.py); a heartbeat renews this process's leases; ending a stream releases
its lease only after the writer has stored what the stream did, so a session resumed anywhere
has every finished turn. Commands for a session live elsewhere go to its owner over
LISTEN/NOTIFY (server/cluster/control.py). One process is simply a cluster of one.

When the database is down the plane degrades to one process's view: streams are admitted by
the local limits only, listings show local sessions, and the heartbeat takes the leases of
sessions that went live meanwhile as soon as the database answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from server.cluster import leases
from server.cluster.control import ControlChannel, Handler
from server.cluster.leases import Lease
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions.limits import TenantLimits

log = logging.getLogger(__name__)
Detail = Callable[[], dict[str, Any]]
DOWN = (*DB_DOWN, asyncpg.PostgresError)
PRUNE_EVERY = 30  # heartbeats


def new_owner_id() -> str:
    """host-pid-random: unique per process start, readable in the lease table."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class ControlPlane:
    def __init__(
        self,
        pool: asyncpg.Pool,
        url: str,
        *,
        owner_id: str = "",
        lease_s: float = 5.0,
        heartbeat_s: float = 1.0,
        max_sessions: int = 1000,
        flush: Callable[[], Awaitable[bool]] | None = None,
        database_ok: Callable[[], bool] = lambda: True,
    ) -> None:
        self.pool = pool
        self.owner_id = owner_id or new_owner_id()
        self.lease_s, self.heartbeat_s, self.max_sessions = lease_s, heartbeat_s, max_sessions
        self.flush = flush  # waits until what was written before the call is stored
        self.database_ok = database_ok
        self.control = ControlChannel(pool, url, self.owner_id)
        self.held: dict[str, Lease] = {}  # leases this process holds (or will, after an outage)
        self._details: dict[str, Detail] = {}
        self._releasing: dict[str, asyncio.Task[None]] = {}  # session id -> its release
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def handle(self, op: str, handler: Handler) -> None:
        self.control.handle(op, handler)

    async def start(self) -> None:
        await self.control.ensure()
        self._task = asyncio.create_task(self._beat(), name="cluster-heartbeat")

    # Going live and ending.
    async def claim(
        self, session_id: str, tenant_id: str, edge: str, tenant: TenantLimits | None
    ) -> None:
        """Own `session_id` cluster-wide or raise the RequestError one process would give.
        With the database down, admits (local limits already held) and claims later."""
        pending = self._releasing.get(session_id)
        if pending is not None:  # this process's previous stream on it: released first
            await asyncio.wait([pending], timeout=3.0)
        self.held[session_id] = Lease(
            session_id=session_id, tenant_id=tenant_id, owner_id=self.owner_id, edge=edge,
            detail={},
        )  # fmt: skip
        if not self.database_ok():
            return
        try:
            async with asyncio.timeout(2.0):
                await leases.claim(
                    self.pool,
                    owner_id=self.owner_id,
                    session_id=session_id,
                    tenant_id=tenant_id,
                    edge=edge,
                    lease_s=self.lease_s,
                    max_sessions=self.max_sessions,
                    tenant=tenant,
                )
        except (*DOWN, TimeoutError) as exc:
            log.warning("session %s admitted without its lease (database: %s); "
                        "the heartbeat claims it", session_id, type(exc).__name__)  # fmt: skip
        except BaseException:
            self.held.pop(session_id, None)
            raise
        else:  # the session changes here now: copies other processes cached are stale
            task = asyncio.create_task(
                self.control.broadcast("evict", {"session_id": session_id}), name="evict"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def describe(self, session_id: str, detail: Detail) -> None:
        """What other processes list for this live session (its edge's view); refreshed by
        the heartbeat, and written now."""
        if session_id not in self.held:
            return
        self._details[session_id] = detail
        task = asyncio.create_task(self._renew([session_id]), name=f"describe:{session_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, session_id: str) -> None:
        """The stream ended: give the lease up once the writer has stored the stream's
        records (the mark is taken now), then tell the others to drop cached copies of the
        session. If the database is down the lease simply expires."""
        self._details.pop(session_id, None)
        if self.held.pop(session_id, None) is None:
            return
        flushed = self.flush() if self.flush is not None else None
        task = asyncio.create_task(self._release(session_id, flushed), name=f"release:{session_id}")
        self._releasing[session_id] = task
        task.add_done_callback(
            lambda t: (
                self._releasing.pop(session_id, None)
                if self._releasing.get(session_id) is t
                else None
            )
        )

    async def released(self, session_id: str, timeout: float = 3.0) -> None:
        """Wait (bounded, never cancelling it) for `release` to give the lease up, so a client
        that goes on at once, on any worker or replica, does not find its session busy."""
        task = self._releasing.get(session_id)
        if task is not None:
            await asyncio.wait({task}, timeout=timeout)

    async def _release(self, session_id: str, flushed: Awaitable[bool] | None) -> None:
        if flushed is not None:
            await flushed
        try:
            async with asyncio.timeout(2.0):
                await leases.release(self.pool, self.owner_id, session_id)
        except (*DOWN, TimeoutError):
            return
        await self.control.broadcast("evict", {"session_id": session_id})

    # Cluster-wide reads.
    async def live(self, tenant_id: str | None = None, edge: str | None = None) -> list[Lease]:
        """Live leases cluster-wide; with the database down, this process's own."""
        try:
            async with asyncio.timeout(2.0):
                return await leases.live(self.pool, tenant_id, edge)
        except (*DOWN, TimeoutError):
            return [
                lease
                for lease in self.held.values()
                if tenant_id in (None, lease.tenant_id) and edge in (None, lease.edge)
            ]

    async def holder(self, session_id: str) -> Lease | None:
        """Who owns the session's live lease (None: nobody, or the database is down)."""
        try:
            async with asyncio.timeout(2.0):
                return await leases.holder(self.pool, session_id)
        except (*DOWN, TimeoutError):
            return None

    async def live_ids(self, session_ids: list[str]) -> set[str]:
        local = {s for s in session_ids if s in self.held}
        try:
            async with asyncio.timeout(2.0):
                return local | await leases.live_ids(self.pool, session_ids)
        except (*DOWN, TimeoutError):
            return local

    async def tell_owner(self, lease: Lease, op: str, args: dict[str, Any]) -> bool:
        """Ask the owner of `lease` (another process) to run `op`; True once it did."""
        return await self.control.send(lease.owner_id, op, args)

    # The heartbeat.
    async def _beat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(self.heartbeat_s)  # the renewal period, not synchronisation
            beats += 1
            with contextlib.suppress(*DOWN, TimeoutError):
                async with asyncio.timeout(max(1.0, self.lease_s / 2)):
                    await self.control.ensure()
                    await self._renew(list(self.held))
                    if beats % PRUNE_EVERY == 0:
                        keep = [*self.held, *self._releasing]
                        await leases.release_all(self.pool, self.owner_id, keep)
                        await leases.prune(self.pool)

    async def _renew(self, session_ids: list[str]) -> None:
        held = []
        for sid in session_ids:
            lease = self.held.get(sid)
            if lease is None:
                continue
            detail = self._details.get(sid)
            if detail is not None:
                with contextlib.suppress(Exception):
                    lease = Lease(**{**vars(lease), "detail": detail()})
                    self.held[sid] = lease
            held.append(lease)
        try:
            ours = await leases.renew(self.pool, self.owner_id, self.lease_s, held)
        except (*DOWN, TimeoutError):
            return
        for lease in held:
            if lease.session_id not in ours:
                log.warning("session %s is live here but its lease is held by another process "
                            "(taken while this one could not reach the database)",
                            lease.session_id)  # fmt: skip

    async def aclose(self) -> None:
        """After the writer's last flush: finish releases, drop every lease of ours."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._releasing:
            await asyncio.wait(list(self._releasing.values()), timeout=3.0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(*DOWN, TimeoutError):
            async with asyncio.timeout(2.0):
                await leases.release_all(self.pool, self.owner_id, [])
        self.held.clear()
        await self.control.aclose()
