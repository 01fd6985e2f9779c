"""The composition root: builds the Core, serves gRPC (with health and reflection) and the
HTTP edges (REST, WebSocket, WebRTC) on it, in one asyncio loop.

This is the only module that imports every edge. `VoiceServer` is what `python -m server`
runs and what tests start on loopback ports.
"""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from voiceagent.v1 import auth_pb2, auth_pb2_grpc, sessions_pb2, sessions_pb2_grpc
from voiceagent.v1 import voice_agent_service_pb2 as pb
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from pipeline.providers.base import Providers
from server import binding
from server.config import Settings
from server.core import Core
from server.grpc.auth import AuthInterceptor
from server.grpc.auth_service import AuthService
from server.grpc.session_service import SessionService
from server.grpc.tracing import grpc_tracing
from server.grpc.voice_agent import VoiceAgentService
from server.http.app import create_app
from server.http.serve import HttpServer
from server.observe.providers import counted
from server.providers import build_providers
from server.realtime.route import router as realtime_router
from server.sessions.traces import SessionTraces
from server.tracing import Tracing
from server.workers import role
from webrtc_bridge.bridge import Bridge
from webrtc_bridge.routes import router as webrtc_router

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VoiceAgentService"].full_name
SESSION_SERVICE_NAME = sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
AUTH_SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
SERVICES = (SERVICE_NAME, SESSION_SERVICE_NAME, AUTH_SERVICE_NAME)
# Over the 64 KiB chunk limit, so an oversized chunk reaches the service and gets a clear
# OUT_OF_RANGE instead of a transport error.
MAX_MESSAGE_BYTES = 1024 * 1024


def tls_pair(settings: Settings) -> tuple[bytes, bytes]:
    """TLS_KEY_FILE and TLS_CERT_FILE as PEM bytes, checked to be a matching pair, so a bad
    file stops start-up with one message naming the settings (not a gRPC or ssl traceback)."""
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_cert_file, settings.tls_key_file
        )
        return settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes()
    except (OSError, ssl.SSLError) as exc:
        raise RuntimeError(f"TLS_CERT_FILE/TLS_KEY_FILE cannot be used: {exc}") from None


class VoiceServer:
    def __init__(
        self,
        settings: Settings,
        providers: Providers | None = None,
        tracer_provider: TracerProvider | None = None,  # None: OTEL_* environment (or off)
    ) -> None:
        self.settings = settings
        # Each role counts its failures (voiceagent_provider_errors_total).
        self.providers = counted(providers or build_providers(settings))
        self.tracer_provider = tracer_provider
        self.tracing = Tracing(None, owned=False)
        self.health = health.aio.HealthServicer()
        self.grpc: grpc.aio.Server | None = None
        self.core: Core | None = None
        self.http: HttpServer | None = None
        self.bridge: Bridge | None = None
        self.port = 0
        self.http_port = 0

    async def start(self) -> int:
        """Check the TLS files, open the core (raises DatabaseUnavailable), then serve every
        edge (TLS on both ports when TLS_CERT_FILE and TLS_KEY_FILE are set). Raises
        binding.UnsafeBind before listening anywhere it would expose an open server."""
        settings = self.settings
        tls = tls_pair(settings) if settings.tls_cert_file and settings.tls_key_file else None
        self.tracing = tracing = Tracing.configure(self.tracer_provider)
        self.core = core = await Core.open(settings, self.providers)
        core.opener.traces = SessionTraces(tracing.tracer, self.providers, settings.trace_content)
        grpc_host, http_host = binding.hosts(
            settings.grpc_host,
            settings.http_host,
            auth_on=core.auth.enabled,
            allow_unauthenticated=settings.allow_unauthenticated,
        )
        worker = role.worker()
        self.grpc = server = grpc.aio.server(
            interceptors=[*grpc_tracing(tracing.provider), AuthInterceptor(core.auth)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                # Only workers share a port (their parent holds it, server/workers/ports.py);
                # one process on its own fails on a busy port instead of silently sharing it.
                ("grpc.so_reuseport", 1 if worker else 0),
            ],
        )
        pb_grpc.add_VoiceAgentServiceServicer_to_server(VoiceAgentService(core.opener), server)
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionService(core.opener, core.reads), server
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(core.auth), server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{grpc_host}:{settings.grpc_port}"
        try:
            if tls:
                self.port = server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
            else:
                self.port = server.add_insecure_port(address)
        except RuntimeError:  # grpc's "Failed to bind ...; set GRPC_VERBOSITY=debug"
            self.port = 0
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC to {address}: port in use or address not local")
        await server.start()
        # SERVING while the database answers, NOT_SERVING while it does not (what GET /health
        # says too: both follow core.db_health). After graceful shutdown begins, set is a no-op.
        await core.db_health.subscribe(self._grpc_health)
        self.bridge = Bridge(core)
        app = create_app(core, grpc_port=self.port, grpc_services=list(SERVICES))
        app.state.webrtc = self.bridge
        app.include_router(realtime_router)  # /v1/realtime: the OpenAI Realtime edge
        app.include_router(webrtc_router)  # WebRTC signalling and the browser call page
        self.http = HttpServer(
            app,
            http_host,
            settings.http_port,
            shutdown_grace_s=settings.shutdown_grace_s,
            worker=worker[0] if worker else None,
            tls=(settings.tls_cert_file, settings.tls_key_file)
            if settings.tls_cert_file and settings.tls_key_file
            else None,
        )
        self.http_port = await self.http.start()
        log.info("HTTP (REST, WebSocket, WebRTC, /docs) serving on port %d", self.http_port)
        log.info("gRPC serving %s on port %d (providers: stt=%s chat=%s tts=%s)",
                 SERVICE_NAME, self.port, self.providers.stt.name,
                 self.providers.chat.name, self.providers.tts.name)  # fmt: skip
        return self.port

    async def _grpc_health(self, database_ok: bool) -> None:
        status: int = health_pb2.HealthCheckResponse.SERVING
        if not database_ok:
            status = health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME, SESSION_SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """Graceful: refuse new work, let live turns finish for the grace period, then cut;
        flush the database writer last, so every turn of every session is stored."""
        await self.health.enter_graceful_shutdown()
        if self.core is not None:
            await self.core.drain(self.settings.shutdown_grace_s)  # new streams: UNAVAILABLE
        if self.bridge is not None:
            await self.bridge.close_all()  # offers still connecting, and their peer connections
        if self.http is not None:
            await self.http.stop()
        if self.grpc is not None:
            await self.grpc.stop(grace=1.0)
        if self.core is not None:
            await self.core.aclose()
        else:
            await self.providers.aclose()
        await self.tracing.aclose()  # export the last spans

    # What tests and benchmarks look at, from the core.
    @property
    def live(self):
        return self.core.live if self.core else None

    @property
    def store(self):
        return self.core.store if self.core else None

    @property
    def writer(self):
        return self.core.writer if self.core else None

    @property
    def db(self):
        return self.core.db if self.core else None

    @property
    def batcher(self):
        return self.core.batcher if self.core else None
