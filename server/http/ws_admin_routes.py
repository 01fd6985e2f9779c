"""GET /ws/status (who is connected) and POST /ws/disconnect/{session_id} (close one).

The socket closes with 1000 and its live session with it; the stored session stays resumable.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from server.auth.caller import CONVERSE, READ
from server.auth.http import CallerDep
from server.http.deps import ws_registry
from server.http.errors import ERROR_RESPONSES
from server.http.session_schemas import WsDisconnectOut, WsStatusOut
from server.http.ws_registry import WsRegistry
from server.sessions import ids

router = APIRouter(tags=["Real-time (WebSocket)"])
Registry = Annotated[WsRegistry, Depends(ws_registry)]


@router.get(
    "/ws/status",
    summary="Live WebSocket connections",
    response_model=WsStatusOut,
    responses=ERROR_RESPONSES,
)
async def ws_status(registry: Registry, caller: CallerDep) -> WsStatusOut:
    """The caller's tenant's sockets only (a session-scoped token: its session's)."""
    caller.require(READ, caller.session_id)
    connections = [
        c for c in registry.connections(caller.tenant_id) if caller.may_see(c.session_id)
    ]
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
async def ws_disconnect(session_id: str, registry: Registry, caller: CallerDep) -> WsDisconnectOut:
    """Closes the socket (code 1000) and its live session; 404 if that session has no live
    WebSocket (or is another tenant's). The session itself is kept: connecting again
    continues it."""
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(CONVERSE, sid)
    conn = registry.get(sid)
    if conn is None or conn.tenant_id != caller.tenant_id:
        raise HTTPException(404, f"no live WebSocket for session {session_id}")
    await conn.disconnect(1000, "disconnected by request")
    return WsDisconnectOut(session_id=session_id, message=f"WebSocket for {session_id} closed")
