"""Live WebSocket connections: who is connected (GET /ws/status) and closing one on request
(POST /ws/disconnect/{session_id}).

A disconnect closes the socket and its live session; the stored session stays resumable, so
the client can connect again with the same id and continue the conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from pipeline.session import VoiceSession
from server.http.deps import ws_registry
from server.http.errors import ERROR_RESPONSES
from server.http.live import session_uuid
from server.http.session_schemas import WsConnectionOut, WsDisconnectOut, WsStatusOut
from server.sessions import utcnow

router = APIRouter(tags=["Real-time (WebSocket)"])


@dataclass
class WsConnection:
    client_session_id: str  # as in the URL
    session_id: str  # the stored session's UUID
    client: str
    session: VoiceSession
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
        await self.session.close(reason="disconnected")
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

    def connections(self) -> list[WsConnection]:
        return sorted(self._by_session.values(), key=lambda c: c.connected_at)


Registry = Annotated[WsRegistry, Depends(ws_registry)]


@router.get(
    "/ws/status",
    summary="Live WebSocket connections",
    response_model=WsStatusOut,
    responses=ERROR_RESPONSES,
)
async def ws_status(registry: Registry) -> WsStatusOut:
    connections = registry.connections()
    return WsStatusOut(
        active_connections=len(connections),
        session_ids=[c.client_session_id for c in connections],
        connections=[c.describe() for c in connections],
    )


@router.post(
    "/ws/disconnect/{session_id}",
    summary="Close a session's live WebSocket",
    response_model=WsDisconnectOut,
    responses=ERROR_RESPONSES,
)
async def ws_disconnect(session_id: str, registry: Registry) -> WsDisconnectOut:
    """Closes the socket (code 1000) and its live session; 404 if that session has no live
    WebSocket. The session itself is kept: connecting again continues it."""
    conn = registry.get(session_uuid(session_id))
    if conn is None:
        raise HTTPException(404, f"no live WebSocket for session {session_id}")
    await conn.disconnect(1000, "disconnected by request")
    return WsDisconnectOut(session_id=session_id, message=f"WebSocket for {session_id} closed")
