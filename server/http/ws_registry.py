"""Live WebSocket connections of this server: who is connected, and closing one on request.

A disconnect closes the socket and its live session; the stored session stays resumable, so
the client can connect again with the same id and continue the conversation. The routes that
show and close them are in ws_admin_routes.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime

from pipeline.session import VoiceSession
from server.http.session_schemas import WsConnectionOut
from server.sessions.ending import EndReason
from server.sessions.store import utcnow


@dataclass
class WsConnection:
    client_session_id: str  # as in the URL
    session_id: str  # the stored session's UUID
    client: str
    _: KW_ONLY
    session: VoiceSession
    tenant_id: str = "default"
    connected_at: datetime = field(default_factory=utcnow)
    received: int = 0
    sent: int = 0
    turns: int = 0
    close_code: int = 1000
    close_reason: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set when the socket is done

    async def disconnect(self, code: int, reason: str, wait_s: float = 5.0) -> None:
        """Close from the server side: ends the session's stream, and so the socket."""
        self.close_code, self.close_reason = code, reason
        await self.session.close(reason=EndReason.DISCONNECTED)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), wait_s)

    def describe(self) -> WsConnectionOut:
        return WsConnectionOut(
            session_id=self.session_id,
            client_session_id=self.client_session_id,
            connected_at=self.connected_at,
            client=self.client,
            messages_received=self.received,
            messages_sent=self.sent,
            turns=self.turns,
        )


class WsRegistry:
    def __init__(self) -> None:
        self._by_session: dict[str, WsConnection] = {}

    def __len__(self) -> int:
        return len(self._by_session)

    def add(self, conn: WsConnection) -> None:
        self._by_session[conn.session_id] = conn  # one live session per id: LiveSessions checks

    def remove(self, conn: WsConnection) -> None:
        if self._by_session.get(conn.session_id) is conn:
            del self._by_session[conn.session_id]

    def get(self, session_id: str) -> WsConnection | None:
        return self._by_session.get(session_id)

    async def disconnect_command(self, args: dict) -> bool:
        """POST /ws/disconnect sent here by another server process (the control plane)."""
        conn = self.get(str(args.get("session_id")))
        if conn is None:
            return False
        await conn.disconnect(1000, "disconnected by request")
        return True

    def connections(self, tenant_id: str | None = None) -> list[WsConnection]:
        found = [c for c in self._by_session.values() if tenant_id in (None, c.tenant_id)]
        return sorted(found, key=lambda c: c.connected_at)
