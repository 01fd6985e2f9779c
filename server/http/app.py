"""The FastAPI app: the original voice-agent REST and WebSocket API on the streaming pipeline.

It runs in the gRPC server's process and event loop (see serve.py) on the same session core
(providers, store, live registry, opener), so a session is one thing on every edge. It imports
no other edge: the composition root (server/app.py) mounts the WebRTC routes next to these.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.core import Core
from server.http import (
    auth_routes,
    conversation_routes,
    errors,
    general_routes,
    metrics_routes,
    recordings_routes,
    sessions_routes,
    voice_routes,
    ws,
    ws_admin_routes,
    ws_registry,
)
from server.http.audio_codec import MAX_UPLOAD_BYTES
from server.sessions.ids import CLIENT_ID_NAMESPACE

MAX_BODY_BYTES = MAX_UPLOAD_BYTES + 64 * 1024  # the upload plus its multipart framing

DESCRIPTION = f"""
{general_routes.DESCRIPTION}

**Limits.** Audio uploads (`audio_file`, and WebSocket `audio_data` after base64) at most
25 MiB (413) and 60 seconds (413); texts at most 4000 characters (422). Audio formats in:
WAV, MP3, WebM/Opus, OGG (Opus/Vorbis/FLAC), FLAC, M4A; any sample rate, mono or stereo.
Errors are JSON: `{{"detail": ...}}`.

**Session ids.** `/conversation/start` returns a UUID. Anywhere a session id is taken, a
string that is not a UUID (e.g. `session123`) stands for `uuid5({CLIENT_ID_NAMESPACE}, id)`,
so a client may pick its own ids; the WebSocket creates such a session on first use.

**WebSocket** `/ws/voice-agent/{{session_id}}` (query: `customer_id`, `stream_audio=true`,
`record=true` to record the call: `GET /sessions/{{session_id}}/recordings`).
Client messages (JSON text frames):
`{{"type": "text_input", "text": "..."}}`,
`{{"type": "audio_chunk", "audio_data": "<base64>", "format": "wav"}}` (a whole recorded
utterance: wav, webm, ogg, opus, mp3, flac, m4a), or with `"format": "pcm16"` (plus
`sample_rate`, default 16000, and `channels`, default 1) a continuous raw 16-bit stream in
which voice activity detection finds the turns; `{{"type": "interrupt"}}` stops the reply;
`{{"type": "end_of_input"}}` finishes pending replies, then closes.
Server messages: `session_started`, `transcription` {{text}}, `conversation_response` {{text}},
`audio_response` {{audio_base64, format: "mp3"}} (one per reply), `error` {{message}}, and
for streaming clients `state`, `speech_started`, `speech_stopped`, `agent_text_delta`,
`interrupted`, and with `stream_audio=true` `audio_delta` (pcm16, 24 kHz, paced in real time).
A bad message gets an `error` and the socket stays open.
"""
TAGS = [
    {"name": "General", "description": "API information and health."},
    {"name": "Voice processing", "description": "Speech to text, text to speech, voice turns."},
    {"name": "Conversation management", "description": "Sessions and typed turns."},
    {"name": "Real-time (WebSocket)", "description": "Live WebSocket connections."},
    {"name": "Sessions", "description": "Stored sessions and transcripts."},
    {"name": "Authentication", "description": "Client tokens; API keys (admin)."},
]


class BodyLimit:
    """Refuses request bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(int(length))(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # a chunked body with no Content-Length
                raise HTTPException(413, self._message(seen))
            return message

        await self.app(scope, counted, send)

    def _message(self, size: int) -> str:
        return f"request body of {size}+ bytes is over the limit of {self.max_bytes} bytes"

    def _too_large(self, size: int) -> JSONResponse:
        return JSONResponse({"detail": self._message(size)}, status_code=413)


def create_app(core: Core, *, grpc_port: int, grpc_services: list[str]) -> FastAPI:
    """The app on a started core; `GET /` reports the gRPC port and services beside it."""
    # FastAPIOffline serves the Swagger UI and ReDoc scripts from its wheel, not from a CDN:
    # /docs and /redoc work on a machine without internet, like the rest of the server.
    app = FastAPIOffline(
        title="Voice Agent API",
        version=general_routes.VERSION,
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.core = core
    app.state.grpc_port, app.state.grpc_services = grpc_port, grpc_services
    app.state.ws = registry = ws_registry.WsRegistry()
    core.cluster.handle("ws_disconnect", registry.disconnect_command)  # from other processes
    app.state.started_at = time.monotonic()
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    # Pages from other origins (the original browser client was a local HTML file) may call
    # the API only when CORS_ORIGINS lists them ("*": any); the call page at /client is
    # same-origin and needs nothing.
    if core.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=core.settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    for module in (
        general_routes,
        metrics_routes,
        voice_routes,
        conversation_routes,
        ws_admin_routes,
        ws,
        sessions_routes,
        recordings_routes,
        auth_routes,
    ):
        app.include_router(module.router)
    return app
