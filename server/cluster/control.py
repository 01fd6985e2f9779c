"""Control commands between server processes over Postgres LISTEN/NOTIFY.

Why: a request (EndSession, POST /ws/disconnect, a WebRTC hang-up) may land on any process,
but only the owner of the live session (its lease) can act on its stream. The sender
NOTIFYs the owner on one channel; the owner runs the handler registered for the command
against its local registry and NOTIFYs an acknowledgement back, which `send` waits for.
Broadcasts (`to` = "*") reach every other process and are not acknowledged.

The listening connection is a dedicated one (LISTEN holds it); if it drops (database down)
`ensure` connects again, and commands sent meanwhile time out (their senders fall back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)
CHANNEL = "voiceagent_control"
EVERYONE = "*"
Handler = Callable[[dict[str, Any]], Awaitable[bool]]


class ControlChannel:
    def __init__(self, pool: asyncpg.Pool, url: str, owner_id: str) -> None:
        self.pool, self.url, self.owner_id = pool, url, owner_id
        self.handlers: dict[str, Handler] = {}
        self._conn: asyncpg.Connection | None = None
        self._waiting: dict[str, asyncio.Future[bool]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._connecting = asyncio.Lock()

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    def handle(self, op: str, handler: Handler) -> None:
        """Run `handler(args)` when a command `op` reaches this process; True = done."""
        self.handlers[op] = handler

    async def ensure(self, timeout: float = 2.0) -> bool:
        """Listening (connecting again if the connection was lost); False if it cannot."""
        if self.listening:
            return True
        async with self._connecting:
            if self.listening:
                return True
            try:
                conn = await asyncpg.connect(self.url, timeout=timeout)
                await conn.add_listener(CHANNEL, self._heard)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("control channel: cannot listen (%s)", exc)
                return False
            self._conn = conn
            log.debug("control channel listening as %s", self.owner_id)
            return True

    async def send(self, to: str, op: str, args: dict[str, Any], timeout: float = 3.0) -> bool:
        """Tell process `to` to run `op`; True once it says it did (False: not done, no
        answer within `timeout`, or the database is down)."""
        cid = uuid.uuid4().hex
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[cid] = waiter
        try:
            await self._notify({"op": op, "to": to, "from": self.owner_id, "id": cid, "args": args})
            return await asyncio.wait_for(waiter, timeout)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("control: %s to %s got no answer (%s)", op, to, type(exc).__name__)
            return False
        finally:
            self._waiting.pop(cid, None)

    async def broadcast(self, op: str, args: dict[str, Any]) -> None:
        """Every other process runs `op`; nobody answers. Best effort."""
        with contextlib.suppress(
            OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError
        ):
            await self._notify({"op": op, "to": EVERYONE, "from": self.owner_id, "args": args})

    async def _notify(self, message: dict[str, Any]) -> None:
        async with asyncio.timeout(2.0):
            await self.pool.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(message))

    def _heard(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        try:
            message = json.loads(str(payload))
        except ValueError:
            return
        if message.get("to") not in (self.owner_id, EVERYONE):
            return
        if message.get("from") == self.owner_id and message.get("to") == EVERYONE:
            return
        if message.get("op") == "ack":
            waiter = self._waiting.get(message.get("id", ""))
            if waiter is not None and not waiter.done():
                waiter.set_result(bool(message.get("ok")))
            return
        task = asyncio.create_task(self._run(message), name=f"control:{message.get('op')}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, message: dict[str, Any]) -> None:
        handler = self.handlers.get(message.get("op", ""))
        ok = False
        if handler is not None:
            try:
                ok = await handler(message.get("args") or {})
            except Exception:
                log.exception("control command %s failed", message.get("op"))
        if message.get("id") and message.get("to") != EVERYONE:
            ack = {"op": "ack", "to": message.get("from"), "id": message["id"], "ok": ok}
            with contextlib.suppress(
                OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError
            ):
                await self._notify(ack)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), 2.0)
            self._conn = None
