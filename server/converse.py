"""The Converse RPC: one bidirectional stream is one live voice session.

The first request configures the session; after that a reader task feeds audio, text and
control into the session while the handler streams the session's events back. A protocol error
in a later request ends the stream with a status that says what was wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from voiceagent.v1 import converse_pb2

from pipeline.session import SessionOptions, VoiceSession
from server import validation as check
from server.session_opener import SessionOpener
from server.sessions import SessionRecord
from server.validation import InvalidRequest

log = logging.getLogger(__name__)
Request = converse_pb2.ConverseRequest
Response = converse_pb2.ConverseResponse


class ConverseHandler:
    def __init__(self, opener: SessionOpener) -> None:
        self.opener = opener

    async def __call__(
        self, requests: AsyncIterator[Request], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Response]:
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "empty stream: send a config first"
            )
        failure: list[InvalidRequest] = []
        try:
            if first.WhichOneof("request") != "config":
                raise InvalidRequest(
                    "the first ConverseRequest must carry `config`; audio, text and control "
                    "come after it"
                )
            record, options, resumed = await self.opener.open(first.config)
            async with self.opener.running(record, options) as session:
                reader = asyncio.create_task(self._read(requests, session, options, failure))
                try:
                    yield Response(session_started=self._started(record, options, resumed))
                    while (event := await session.events.queue.get()) is not None:
                        yield event
                finally:
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
        except InvalidRequest as exc:  # the config, or the session busy / server full
            await context.abort(exc.code, str(exc))
        if failure:
            await context.abort(failure[0].code, str(failure[0]))
        if session.end_reason == "shutdown":
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"server is shutting down; reconnect with session_id {record.id} to continue",
            )

    def _started(self, record: SessionRecord, options: SessionOptions, resumed: bool):
        p = self.opener.providers
        return converse_pb2.SessionStarted(
            session_id=record.id,
            resumed=resumed,
            output_format={
                "encoding": "AUDIO_ENCODING_LINEAR16",
                "sample_rate_hz": options.output_format.sample_rate,
                "channels": 1,
            },
            providers=converse_pb2.ProviderInfo(stt=p.stt.name, chat=p.chat.name, tts=p.tts.name),
        )

    async def _read(
        self,
        requests: AsyncIterator[Request],
        session: VoiceSession,
        options: SessionOptions,
        failure: list[InvalidRequest],
    ) -> None:
        """Feed the session until the client half-closes, hangs up or breaks the protocol."""
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "audio":
                    await session.push_audio(check.audio_chunk(request.audio, options.input_format))
                elif kind == "text":
                    text = check.bounded_text(request.text.text, "text", check.MAX_TEXT_CHARS, True)
                    await session.push_text(text)
                elif kind == "control":
                    action = request.control.action
                    if action == converse_pb2.CONTROL_ACTION_INTERRUPT:
                        await session.interrupt()
                    elif action == converse_pb2.CONTROL_ACTION_END_OF_INPUT:
                        break
                    elif action == converse_pb2.CONTROL_ACTION_HANG_UP:
                        await session.close(reason="hang_up")
                        return
                    else:
                        raise InvalidRequest(
                            "control.action must be set (INTERRUPT, END_OF_INPUT or HANG_UP)"
                        )
                elif kind == "config":
                    raise InvalidRequest("config may only be sent once, in the first request")
                else:
                    raise InvalidRequest("empty ConverseRequest: set one of audio, text, control")
            await session.end_input()
        except InvalidRequest as exc:
            failure.append(exc)
            await session.close()
