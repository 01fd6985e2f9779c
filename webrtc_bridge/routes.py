"""HTTP routes of the WebRTC bridge (signalling) and the browser call page.

The facade includes `router`; the routes find the running server at
`request.app.state.voice_server` and keep their own state (the `Bridge`, made on first use)
at `request.app.state.webrtc`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from server.http.errors import GRPC_TO_HTTP
from server.validation import InvalidRequest
from webrtc_bridge.calls import Bridge
from webrtc_bridge.signalling import (
    AnswerOut,
    CallsOut,
    CandidatesIn,
    IceConfigOut,
    OfferIn,
    SignallingError,
    ice_servers,
)

router = APIRouter()
WEB = Path(__file__).resolve().parent.parent / "clients" / "web"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
ERRORS = {
    400: {"description": "Malformed SDP or candidate, no audio, or no common codec."},
    404: {"description": "Unknown pc_id or session."},
    409: {"description": "The session has ended, or another stream is live on it."},
    503: {"description": "The server is full or the database is down."},
}


def bridge(request: Request) -> Bridge:
    state = request.app.state
    found = getattr(state, "webrtc", None)
    if found is None:
        server = getattr(state, "voice_server", None) or getattr(state, "voice", None)
        if server is None or server.opener is None:
            raise HTTPException(503, "the voice server is not running")
        found = state.webrtc = Bridge(server)
    return found


@contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except SignallingError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except InvalidRequest as exc:
        raise HTTPException(GRPC_TO_HTTP.get(exc.code, 400), str(exc)) from None


@router.post("/webrtc/offer", response_model=AnswerOut, tags=["WebRTC"], responses=ERRORS)
async def offer(body: OfferIn, request: Request) -> AnswerOut:
    """Start a call: the browser's SDP offer in, the server's answer out (with its ICE
    candidates). The offer needs audio; a data channel in it carries events and commands."""
    with http_errors():
        return await bridge(request).answer(body)


@router.patch("/webrtc/offer", status_code=204, tags=["WebRTC"], responses=ERRORS)
async def candidates(body: CandidatesIn, request: Request) -> Response:
    """Trickle ICE: the browser's candidates as they come; `{"candidate": ""}` ends them."""
    with http_errors():
        await bridge(request).add_candidates(body)
    return Response(status_code=204)


@router.delete("/webrtc/calls/{pc_id}", status_code=204, tags=["WebRTC"], responses=ERRORS)
async def hang_up(pc_id: str, request: Request) -> Response:
    """Hang up: the call is torn down and its session ended."""
    with http_errors():
        await bridge(request).hang_up(pc_id)
    return Response(status_code=204)


@router.get("/webrtc/calls", response_model=CallsOut, tags=["WebRTC"])
async def calls(request: Request) -> CallsOut:
    """Live calls with their connection state, traffic and outbound pacing."""
    found = bridge(request)
    return CallsOut(
        calls=[call.describe() for call in found.calls.values()],
        peer_connections=len(found.peer_connections),
    )


@router.get("/webrtc/config", response_model=IceConfigOut, tags=["WebRTC"])
async def config(request: Request) -> IceConfigOut:
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
