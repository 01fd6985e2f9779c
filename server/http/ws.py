"""WS /ws/voice-agent/{session_id}: the original real-time protocol on a VoiceSession.

The id in the path is the client's choice: a UUID is used as it is, any other string (the
original client's "session123") maps to a stable uuid5, and a session that does not exist
yet is created. One reader task feeds the session (typed text, whole recorded utterances
straight to speech-to-text, continuous pcm16 through the VAD) while this handler sends the
session's events. A bad message gets an error message and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket

from pipeline.audio import PIPELINE_RATE, PcmFormat, StreamResampler
from pipeline.session import VoiceSession
from server.auth.http import socket_caller
from server.core import Core
from server.http import audio_codec
from server.http.requests import socket_request
from server.http.ws_protocol import (
    AudioChunk,
    Control,
    EventRenderer,
    Message,
    ProtocolError,
    TextInput,
    ToolResultIn,
    ToolsIn,
    error,
    parse,
)
from server.http.ws_registry import WsConnection, WsRegistry
from server.sessions import checks, ids
from server.sessions.ending import EndReason
from server.sessions.errors import Kind, RequestError

log = logging.getLogger(__name__)
router = APIRouter()
# The WebSocket edge's error table: a session that cannot open closes the socket with
# 1013 (try again later) when retrying may help, else 1008 (policy violation).
CLOSE_CODES = {Kind.UNAVAILABLE: 1013, Kind.EXHAUSTED: 1013, Kind.RATE_LIMITED: 1013}
# The `code` of the error message for refusals a client must handle differently.
ERROR_CODES = {
    Kind.UNAUTHENTICATED: "unauthenticated",
    Kind.PERMISSION_DENIED: "permission_denied",
    Kind.RATE_LIMITED: "rate_limited",
}


@router.websocket("/ws/voice-agent/{session_id}")
async def voice_agent_socket(
    websocket: WebSocket,
    session_id: str,
    customer_id: str = "",
    stream_audio: bool = False,
    token: str | None = None,
    record: bool = False,
) -> None:
    core: Core = websocket.app.state.core
    registry: WsRegistry = websocket.app.state.ws
    await websocket.accept()
    try:
        caller = await socket_caller(websocket, token)
        sid = ids.client_chosen(session_id, caller.tenant_id)
        checks.bounded_text(customer_id, "customer_id", checks.MAX_NAME_CHARS)
        lead = core.settings.output_lead_ms
        request = socket_request(caller, sid, customer_id, stream_audio, lead, record)
        opened = await core.opener.open(request)
        async with core.opener.running(opened) as session:
            client = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else ""
            conn = WsConnection(
                session_id, sid, client, session=session, tenant_id=caller.tenant_id
            )
            registry.add(conn)
            try:
                socket = Socket(websocket, conn, EventRenderer(stream_audio))
                await socket.serve(opened.resumed, core.provider_names())
            finally:
                registry.remove(conn)
                conn.closed.set()
    except RequestError as exc:  # cannot open the session: say why, then close
        with contextlib.suppress(Exception):
            await websocket.send_json(error(str(exc), ERROR_CODES.get(exc.kind, "invalid_request")))
            reason = str(exc).encode()[:120].decode(errors="ignore")  # frames allow 123 bytes
            await websocket.close(CLOSE_CODES.get(exc.kind, 1008), reason)


class Socket:
    def __init__(self, websocket: WebSocket, conn: WsConnection, renderer: EventRenderer):
        self.websocket, self.conn, self.renderer = websocket, conn, renderer
        self.session: VoiceSession = conn.session
        self._send_lock = asyncio.Lock()
        self._resampler: StreamResampler | None = None
        self._client_gone = False
        self._input_ended = False

    async def serve(self, resumed: bool, providers: dict[str, str]) -> None:
        reader = asyncio.create_task(self._read(), name=f"ws-reader:{self.conn.session_id}")
        try:
            if not await self.send({"type": "session_started", "session_id": self.conn.session_id,
                                    "client_session_id": self.conn.client_session_id,
                                    "resumed": resumed, "providers": providers}):  # fmt: skip
                return  # gone already: send() closed the session, whose events may never end
            async for event in self.session.events:
                for message in await self.renderer.render(event):
                    if not await self.send(message):
                        return
                self.conn.turns = self.renderer.turns
            await self._close()
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _close(self) -> None:
        """The session's stream ended: say why in the close frame."""
        if self._client_gone:
            return
        code, reason = self.conn.close_code, self.conn.close_reason
        if not reason:
            end = EndReason.of(self.session.end_reason)
            if end == EndReason.SHUTDOWN:
                code, reason = 1012, "server restarting; reconnect with the same id to continue"
            elif end == EndReason.IDLE:
                reason = "idle timeout; reconnect with the same id to continue"
                await self.send(error("no input and no agent activity for too long", "idle"))
            elif end == EndReason.MAX_DURATION:
                reason = "maximum session duration reached; turns are saved"
            elif end.final:
                reason = "session ended"
            else:
                reason = "input ended"
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)

    async def send(self, message: dict) -> bool:
        async with self._send_lock:
            try:
                await self.websocket.send_json(message)
            except Exception:  # the client is gone (closed, reset): nothing to tell it
                self._client_gone = True
                await self.session.close()
                return False
        self.conn.sent += 1
        return True

    async def _read(self) -> None:
        try:
            while True:
                frame = await self.websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                self.conn.received += 1
                try:
                    await self._apply(parse(frame.get("text")))
                except (ProtocolError, audio_codec.AudioError, RequestError) as exc:
                    await self.send(error(str(exc)))
                except Exception as exc:  # a bug must not end the conversation
                    log.exception("WebSocket %s: message failed", self.conn.session_id)
                    await self.send(error(f"internal error ({type(exc).__name__})", "internal"))
        except Exception as exc:  # a broken connection ends like a disconnect
            log.debug("WebSocket %s reader ended: %r", self.conn.session_id, exc)
        self._client_gone = True
        await self.session.close()

    async def _apply(self, message: Message) -> None:
        if self._input_ended:
            raise ProtocolError("input has ended (end_of_input was sent); reconnect to go on")
        if isinstance(message, ToolResultIn):
            await self.session.tool_result(message.call_id, message.output, message.error)
        elif isinstance(message, ToolsIn):
            catalog = self.websocket.app.state.core.opener.tools
            self.session.set_tools(
                catalog.options(message.tools, message.tool_sets, message.choice)
            )
        elif isinstance(message, TextInput):
            await self.session.push_text(message.text)
        elif isinstance(message, Control):
            if message.action == "interrupt":
                await self.session.interrupt()
            else:
                self._input_ended = True
                await self.session.end_input()
        elif message.is_stream:
            await self.session.push_audio(self._to_pipeline(message))
        else:
            decoded = await asyncio.to_thread(audio_codec.decode, message.data, "audio_data")
            await self.session.push_utterance(decoded.pcm)

    def _to_pipeline(self, chunk: AudioChunk) -> bytes:
        """A pcm16 chunk at its own rate and channels -> the session's 16 kHz mono stream."""
        fmt = PcmFormat(chunk.sample_rate, chunk.channels)
        if self._resampler is None or self._resampler.src != fmt:
            self._resampler = StreamResampler(fmt, PIPELINE_RATE)
        return self._resampler.process(chunk.data)
