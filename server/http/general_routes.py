"""GET / (what this API is and where its docs are) and GET /health (can it serve now)."""

from __future__ import annotations

import time
from importlib import metadata

from fastapi import APIRouter, Request, Response

from server.http.deps import CoreDep
from server.http.schemas import ApiInfo, GrpcInfo, HealthOut, PartHealth

router = APIRouter(tags=["General"])
try:
    VERSION = metadata.version("voiceagent")
except metadata.PackageNotFoundError:  # running from a source tree that was not installed
    VERSION = "0.0.0"
DESCRIPTION = (
    "Real-time voice agent: speech-to-text, an LLM and text-to-speech as one streaming "
    "pipeline, over REST, a WebSocket and gRPC."
)


@router.get("/", summary="API information", response_model=ApiInfo)
async def root(request: Request) -> ApiInfo:
    """Name, version, where the docs are, and the gRPC address of the same server: the
    address this connection reached (never the request's Host header, which a client
    chooses)."""
    server = request.scope.get("server")
    host = str(server[0]) if server else "localhost"
    host = host.removeprefix("::ffff:")  # an IPv4 client on a dual-stack socket
    host = f"[{host}]" if ":" in host else host
    return ApiInfo(
        name="Voice Agent API",
        version=VERSION,
        description=DESCRIPTION,
        docs="/docs",
        redoc="/redoc",
        openapi="/openapi.json",
        websocket="/ws/voice-agent/{session_id}",
        grpc=GrpcInfo(
            address=f"{host}:{request.app.state.grpc_port}",
            services=request.app.state.grpc_services,
        ),
    )


@router.get(
    "/health",
    summary="Health of the process, the database and the providers",
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "A required part is down."}},
)
async def health(request: Request, response: Response, core: CoreDep) -> HealthOut:
    """200 while the server can serve; 503, with `reason`, when the database is unreachable,
    a provider is not configured (every turn would fail) or the server is draining (shutting
    down: a load balancer should send new callers elsewhere; gRPC health says NOT_SERVING)."""
    reasons = []
    if core.live.closed:
        reasons.append("the server is shutting down")
    db_ok = await core.db_health.check()  # the gRPC health service hears the answer too
    if not db_ok:
        reasons.append("the database is unreachable")
    providers = {}
    for role in ("stt", "chat", "tts"):
        provider = getattr(core.providers, role)
        missing = provider.name == "unconfigured"
        detail = getattr(provider, "reason", "") if missing else ""
        providers[role] = PartHealth(
            status="not_configured" if missing else "ok", name=provider.name, detail=detail
        )
        if missing:
            reasons.append(f"no {role} provider: {detail}")
    if reasons:
        response.status_code = 503
    writer = core.writer
    return HealthOut(
        status="unavailable" if reasons else "ok",
        reason="; ".join(reasons),
        version=VERSION,
        uptime_s=round(time.monotonic() - request.app.state.started_at, 3),
        database=PartHealth(status="ok" if db_ok else "down", name="postgres"),
        pending_writes=writer.pending,
        writer={**writer.metrics, "max_pending": writer.max_pending},
        providers=providers,
        live_sessions=len(core.live),
        websocket_connections=len(request.app.state.ws),
    )
