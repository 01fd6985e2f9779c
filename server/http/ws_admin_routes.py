"""GET /ws/status (who is connected) and POST /ws/disconnect/{session_id} (close one).

The socket closes with 1000 and its live session with it; the stored session stays resumable.
Both are cluster-wide: sockets served by other server processes on the same database come
from the control plane's leases, and a disconnect is sent to the process that owns the socket.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException

from server.auth.caller import CONVERSE, READ
from server.auth.http import CallerDep
from server.http.deps import CoreDep, ws_registry
from server.http.errors import ERROR_RESPONSES
from server.http.session_schemas import WsConnectionOut, WsDisconnectOut, WsStatusOut
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
async def ws_status(registry: Registry, core: CoreDep, caller: CallerDep) -> WsStatusOut:
    """The caller's tenant's sockets only (a session-scoped token: its session's), on every
    server process sharing this database."""
    caller.require(READ, caller.session_id)
    here = core.cluster.owner_id
    shown = [
        c.describe().model_copy(update={"server": here})
        for c in registry.connections(caller.tenant_id)
        if caller.may_see(c.session_id)
    ]
    local = {c.session_id for c in shown}
    for lease in await core.cluster.live(caller.tenant_id, "websocket"):
        if lease.owner_id == here or lease.session_id in local or not lease.detail:
            continue  # this process's own are listed above, fresher
        if caller.may_see(lease.session_id):
            shown.append(WsConnectionOut(**{**lease.detail, "server": lease.owner_id}))
    shown.sort(key=lambda c: c.connected_at)
    return WsStatusOut(
        active_connections=len(shown),
        session_ids=[c.client_session_id for c in shown],
        connections=shown,
    )


@router.post(
    "/ws/disconnect/{session_id}",
    summary="Close a session's live WebSocket",
    response_model=WsDisconnectOut,
    responses=ERROR_RESPONSES,
)
async def ws_disconnect(
    session_id: str, registry: Registry, core: CoreDep, caller: CallerDep
) -> WsDisconnectOut:
    """Closes the socket (code 1000) and its live session, on whichever server process has
    it; 404 if that session has no live WebSocket (or is another tenant's). The session
    itself is kept: connecting again continues it."""
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(CONVERSE, sid)
    conn = registry.get(sid)
    if conn is not None and conn.tenant_id == caller.tenant_id:
        await conn.disconnect(1000, "disconnected by request")
    else:
        lease = await core.cluster.holder(sid)
        if (
            lease is None
            or lease.edge != "websocket"
            or lease.tenant_id != caller.tenant_id
            or lease.owner_id == core.cluster.owner_id
            or not await core.cluster.tell_owner(lease, "ws_disconnect", {"session_id": sid})
        ):
            raise HTTPException(404, f"no live WebSocket for session {session_id}")
    return WsDisconnectOut(session_id=session_id, message=f"WebSocket for {session_id} closed")
