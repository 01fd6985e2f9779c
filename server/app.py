"""The server process: one asyncio loop serving gRPC (with health and reflection) and the
REST/WebSocket API (server/http).

`VoiceServer` is what `python -m server` runs and what tests start on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from voiceagent.v1 import sessions_pb2, sessions_pb2_grpc
from voiceagent.v1 import voice_agent_service_pb2 as pb
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from pipeline.providers.base import Providers
from pipeline.silero import SileroBatcher
from server.config import Settings
from server.persistence.database import Database
from server.persistence.writer import WriteBehindWriter
from server.providers import build_providers
from server.service import VoiceAgentService
from server.session_opener import SessionOpener
from server.session_service import SessionService
from server.sessions import LiveSessions, SessionStore

if TYPE_CHECKING:
    from server.http.serve import HttpServer

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VoiceAgentService"].full_name
SESSION_SERVICE_NAME = sessions_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name
# Over the 64 KiB chunk limit, so an oversized chunk reaches the service and gets a clear
# OUT_OF_RANGE instead of a transport error.
MAX_MESSAGE_BYTES = 1024 * 1024


class VoiceServer:
    def __init__(self, settings: Settings, providers: Providers | None = None) -> None:
        self.settings = settings
        self.providers = providers or build_providers(settings)
        self.batcher = SileroBatcher()
        self.live = LiveSessions(settings.max_sessions)
        self.health = health.aio.HealthServicer()
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ]
        )
        self.db: Database | None = None
        self.writer: WriteBehindWriter | None = None
        self.store: SessionStore | None = None
        self.opener: SessionOpener | None = None
        self.http: HttpServer | None = None
        self.port = 0
        self.http_port = 0

    async def start(self) -> int:
        """Open the database (raises DatabaseUnavailable), then serve."""
        settings = self.settings
        self.db = await Database.open(
            settings.database_url, settings.data_dir, settings.db_pool_size
        )
        self.writer = WriteBehindWriter(self.db.pool, settings.db_writer_max_pending)
        self.writer.start()
        self.store = SessionStore(self.db, self.writer)
        self.opener = SessionOpener(settings, self.providers, self.batcher, self.store, self.live)
        service = VoiceAgentService(self.opener)
        pb_grpc.add_VoiceAgentServiceServicer_to_server(service, self.grpc)
        sessions_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionService(self.store, self.live), self.grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        names = (SERVICE_NAME, SESSION_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self.grpc)
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        self.port = self.grpc.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind gRPC to {address}")
        await self.grpc.start()
        for name in ("", SERVICE_NAME, SESSION_SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        # The REST/WebSocket API, in this loop (imported here: its routes import this module).
        from server.http.app import create_app
        from server.http.serve import HttpServer

        self.http = HttpServer(
            create_app(self), settings.http_host, settings.http_port, settings.shutdown_grace_s
        )
        self.http_port = await self.http.start()
        log.info("HTTP (REST, WebSocket, /docs) serving on port %d", self.http_port)
        log.info("gRPC serving %s on port %d (providers: stt=%s chat=%s tts=%s)",
                 SERVICE_NAME, self.port, self.providers.stt.name,
                 self.providers.chat.name, self.providers.tts.name)  # fmt: skip
        return self.port

    async def stop(self) -> None:
        """Graceful: refuse new work, let live turns finish for the grace period, then cut;
        flush the database writer last, so every turn of every session is stored."""
        await self.health.enter_graceful_shutdown()
        self.live.closed = True  # new streams now get UNAVAILABLE
        grace = self.settings.shutdown_grace_s

        async def finish_turns() -> None:
            for session in self.live.sessions():
                session.end_reason = "shutdown"
                await session.end_input()  # may wait on a stalled client: inside the grace
            await self.live.wait_empty()

        try:
            await asyncio.wait_for(finish_turns(), grace)
        except TimeoutError:
            log.warning("%d session(s) still live after %.1fs; cutting them", len(self.live), grace)
            for session in self.live.sessions():
                await session.close(reason="shutdown")
            # Their streams' cleanup saves them; the writer must still be running for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.live.wait_empty(), 5.0)
        if self.http is not None:
            await self.http.stop()
        await self.grpc.stop(grace=1.0)
        await self.batcher.aclose()
        await self.providers.aclose()
        if self.writer is not None:
            await self.writer.close()
        if self.db is not None:
            await self.db.close()
