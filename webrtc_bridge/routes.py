"""HTTP routes of the WebRTC bridge (signalling) and the browser call page.

The composition root mounts `router` on the HTTP app and puts the `Bridge` (built on the
session core) at `request.app.state.webrtc`. This edge has its own error table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from server.auth.caller import READ
from server.auth.http import CallerDep
from server.sessions.errors import Kind, RequestError
from webrtc_bridge.bridge import Bridge
from webrtc_bridge.signalling import (
    AnswerOut,
    CallsOut,
    CandidatesIn,
    IceConfigOut,
    OfferIn,
    ice_servers,
)

router = APIRouter()
WEB = Path(__file__).resolve().parent.parent / "clients" / "web"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
HTTP_STATUS = {
    Kind.INVALID: 400,
    Kind.TOO_LARGE: 400,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.EXHAUSTED: 503,
    Kind.UNAVAILABLE: 503,
    Kind.NOT_CONFIGURED: 503,
    Kind.PROVIDER_FAILED: 502,
    Kind.UNAUTHENTICATED: 401,
    Kind.PERMISSION_DENIED: 403,
    Kind.RATE_LIMITED: 429,
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Malformed SDP or candidate, no audio, or no common codec."},
    401: {"description": "No credentials, or not valid ones (once authentication is on)."},
    403: {"description": "The credentials do not allow this (verb, or another session)."},
    404: {"description": "Unknown pc_id or session."},
    409: {"description": "The session has ended, or another stream is live on it."},
    429: {"description": "Over a per-tenant limit; retry after `Retry-After` seconds."},
    503: {"description": "The server is full or the database is down."},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {s: ERRORS[s] for s in (401, 403)}


def bridge(request: Request) -> Bridge:
    return request.app.state.webrtc


@contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except RequestError as exc:
        headers = (
            {"Retry-After": str(max(1, round(exc.retry_after_s)))} if exc.retry_after_s else None
        )
        raise HTTPException(HTTP_STATUS[exc.kind], str(exc), headers=headers) from None


@router.post("/webrtc/offer", response_model=AnswerOut, tags=["WebRTC"], responses=ERRORS)
async def offer(body: OfferIn, request: Request, caller: CallerDep) -> AnswerOut:
    """Start a call: the browser's SDP offer in, the server's answer out (with its ICE
    candidates). The offer needs audio; a data channel in it carries events and commands."""
    with http_errors():
        return await bridge(request).answer(body, caller)


@router.patch("/webrtc/offer", status_code=204, tags=["WebRTC"], responses=ERRORS)
async def candidates(body: CandidatesIn, request: Request, caller: CallerDep) -> Response:
    """Trickle ICE: the browser's candidates as they come; `{"candidate": ""}` ends them."""
    with http_errors():
        await bridge(request).add_candidates(body, caller)
    return Response(status_code=204)


@router.delete("/webrtc/calls/{pc_id}", status_code=204, tags=["WebRTC"], responses=ERRORS)
async def hang_up(pc_id: str, request: Request, caller: CallerDep) -> Response:
    """Hang up: the call is torn down and its session ended."""
    with http_errors():
        await bridge(request).hang_up(pc_id, caller)
    return Response(status_code=204)


@router.get("/webrtc/calls", response_model=CallsOut, tags=["WebRTC"], responses=AUTH_ERRORS)
async def calls(request: Request, caller: CallerDep) -> CallsOut:
    """The caller's tenant's live calls with their connection state, traffic and pacing, on
    every server process sharing the database (`server` says which; `peer_connections`
    counts this process's)."""
    found = bridge(request)
    with http_errors():
        caller.require(READ, caller.session_id)
    mine = [c for c in found.calls.values() if c.tenant_id == caller.tenant_id]
    here = found.cluster.owner_id
    shown = [{**call.describe(), "server": here} for call in mine]
    shown += await found.remote_calls(caller.tenant_id)  # other server processes' calls
    return CallsOut(
        calls=[c for c in shown if caller.may_see(c["session_id"])],
        peer_connections=len(found.peer_connections),
    )


@router.get("/webrtc/config", response_model=IceConfigOut, tags=["WebRTC"], responses=AUTH_ERRORS)
async def config(request: Request, caller: CallerDep) -> IceConfigOut:
    """What the page needs for its RTCPeerConnection: the configured STUN/TURN servers."""
    settings = bridge(request).settings
    return IceConfigOut(
        ice_servers=ice_servers(settings), ice_timeout_s=settings.webrtc_ice_timeout_s
    )


@router.get("/client", include_in_schema=False)
async def client_page() -> FileResponse:
    return FileResponse(WEB / "index.html", media_type="text/html")


@router.get("/client/{asset}", include_in_schema=False)
async def client_asset(asset: str) -> Response:
    if asset == "index.html":
        return RedirectResponse("/client")
    if asset not in ASSETS:
        raise HTTPException(404, f"no such file: {asset[:64]}")
    return FileResponse(WEB / asset, media_type=ASSETS[asset])
