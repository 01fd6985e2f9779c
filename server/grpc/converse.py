"""The Converse RPC: one bidirectional stream is one live voice session.

The first request configures the session; after that a reader task feeds audio, text and
control into the session while the handler streams the session's events back. A protocol error
in a later request, or a request that cannot even be decoded, ends the stream with a status
that says what was wrong; the session is closed and stays resumable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
from voiceagent.v1 import converse_pb2

from pipeline.audio import PcmFormat
from pipeline.session import VoiceSession
from server.grpc.auth import current_caller
from server.grpc.requests import session_request, tool_result
from server.grpc.status import abort
from server.sessions import checks
from server.sessions.ending import EndReason
from server.sessions.errors import RequestError
from server.sessions.opener import SessionOpener

log = logging.getLogger(__name__)
Request = converse_pb2.ConverseRequest
Response = converse_pb2.ConverseResponse


def undecodable(exc: Exception) -> RequestError:
    """A request grpc could not deserialize (not a ConverseRequest at all)."""
    log.debug("Converse: unreadable request: %r", exc)
    return RequestError(
        "a request could not be decoded as a voiceagent.v1.ConverseRequest "
        f"({type(exc).__name__}); check the client's generated stubs"
    )


class ConverseHandler:
    def __init__(self, opener: SessionOpener) -> None:
        self.opener = opener

    async def __call__(
        self, requests: AsyncIterator[Request], context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[Response, None]:
        failure: list[RequestError] = []
        try:
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                raise RequestError("empty stream: send a config first") from None
            except Exception as exc:
                raise undecodable(exc) from None
            if first.WhichOneof("request") != "config":
                raise RequestError(
                    "the first ConverseRequest must carry `config`; audio, text and control "
                    "come after it"
                )
            request = session_request(first.config, self.opener.settings, current_caller())
            opened = await self.opener.open(request)
            async with self.opener.running(opened) as session:
                fmt = opened.options.input_format
                reader = asyncio.create_task(self._read(requests, session, fmt, failure))
                try:
                    yield Response(session_started=self.opener.started(opened))
                    async for event in session.events:
                        yield event
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except RequestError as exc:  # the config, or the session busy / server full
            await abort(context, exc)
        if failure:
            await abort(context, failure[0])
        if session.end_reason == EndReason.SHUTDOWN:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"server is shutting down; reconnect with session_id {opened.record.id} "
                "to continue",
            )
        if session.end_reason == EndReason.MAX_DURATION:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"session {opened.record.id} reached its maximum duration; its turns are saved",
            )
        if session.end_reason == EndReason.IDLE:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"session idle for {self.opener.settings.session_idle_timeout_s:g}s (no input, "
                f"no agent activity); reconnect with session_id {opened.record.id} to continue",
            )

    async def _read(
        self,
        requests: AsyncIterator[Request],
        session: VoiceSession,
        fmt: PcmFormat | None,
        failure: list[RequestError],
    ) -> None:
        """Feed the session until the client half-closes, hangs up or breaks the protocol."""
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio":
                    await session.push_audio(checks.audio_chunk(request.audio, fmt))
                elif kind == "text":
                    text = request.text.text
                    checks.bounded_text(text, "text", checks.MAX_TEXT_CHARS, required=True)
                    await session.push_text(text)
                elif kind == "tool_result":
                    await session.tool_result(*tool_result(request.tool_result))
                elif kind == "control":
                    action = request.control.action
                    if action == converse_pb2.CONTROL_ACTION_INTERRUPT:
                        await session.interrupt()
                    elif action == converse_pb2.CONTROL_ACTION_END_OF_INPUT:
                        break
                    elif action == converse_pb2.CONTROL_ACTION_HANG_UP:
                        await session.close(reason=EndReason.HANG_UP)
                        return
                    else:
                        raise RequestError(
                            "control.action must be set (INTERRUPT, END_OF_INPUT or HANG_UP)"
                        )
                elif kind == "config":
                    raise RequestError("config may only be sent once, in the first request")
                else:
                    raise RequestError(
                        "empty ConverseRequest: set one of audio, text, control, tool_result"
                    )
            await session.end_input()
        except RequestError as exc:
            failure.append(exc)
            await session.close()
        except Exception as exc:  # grpc could not decode a request: the stream must still end
            failure.append(undecodable(exc))
            await session.close()
