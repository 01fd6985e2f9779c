"""The Converse RPC: one bidirectional stream is one live voice session.

The first request configures the session; after that a reader task feeds audio, text and
control into the session while the handler streams the session's events back. A protocol error
in a later request ends the stream with a status that says what was wrong.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator

import grpc
from voiceagent.v1 import converse_pb2

from pipeline.conversation import Conversation
from pipeline.providers.base import Providers
from pipeline.session import SessionOptions, VoiceSession
from pipeline.silero import SileroBatcher
from server import validation as check
from server.config import Settings
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions import (
    LiveSessions,
    SessionBusy,
    SessionRecord,
    SessionStore,
    TooManySessions,
)
from server.validation import InvalidRequest

log = logging.getLogger(__name__)
Request = converse_pb2.ConverseRequest
Response = converse_pb2.ConverseResponse


class ConverseHandler:
    def __init__(
        self,
        settings: Settings,
        providers: Providers,
        batcher: SileroBatcher,
        store: SessionStore,
        live: LiveSessions,
    ) -> None:
        self.settings, self.providers, self.batcher = settings, providers, batcher
        self.store, self.live = store, live

    async def __call__(
        self, requests: AsyncIterator[Request], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Response]:
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "empty stream: send a config first"
            )
        try:
            if first.WhichOneof("request") != "config":
                raise InvalidRequest(
                    "the first ConverseRequest must carry `config`; audio, text and control "
                    "come after it"
                )
            record, options, resumed = await self._open(first.config)
        except InvalidRequest as exc:
            await context.abort(exc.code, str(exc))
        session = VoiceSession(
            record.id,
            self.providers,
            self.batcher,
            Conversation(record.instructions, record.history, record.next_turn_index),
            options,
            recorder=self.store.recorder(record),
        )
        try:
            self.live.add(session)
        except SessionBusy:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"session {record.id} already has a live stream; end it first",
            )
        except TooManySessions:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the server is at its limit of {self.live.limit} live sessions; retry later",
            )
        failure: list[InvalidRequest] = []
        session.start()
        reader = asyncio.create_task(self._read(requests, session, options, failure))
        try:
            yield Response(session_started=self._started(record, options, resumed))
            while (event := await session.events.queue.get()) is not None:
                yield event
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.close()
            self._save(record, session)
            self.live.remove(session)
        if failure:
            await context.abort(failure[0].code, str(failure[0]))
        if session.end_reason == "shutdown":
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"server is shutting down; reconnect with session_id {record.id} to continue",
            )

    async def _open(self, config: converse_pb2.SessionConfig):
        check.bounded_text(config.customer_id, "config.customer_id", check.MAX_NAME_CHARS)
        check.bounded_text(config.voice, "config.voice", check.MAX_NAME_CHARS)
        check.bounded_text(config.instructions, "config.instructions", check.MAX_INSTRUCTIONS_CHARS)
        input_format = (
            check.input_format(config.input_format, "config.input_format")
            if config.HasField("input_format")
            else None
        )
        options = SessionOptions(
            input_format=input_format,
            output_format=check.output_format(config.output_format, "config.output_format"),
            voice=config.voice or None,
            vad=check.vad_params(config.vad, self.settings),
            output_lead_ms=self.settings.output_lead_ms,
        )
        if not config.session_id:
            record = await self.store.create(
                config.customer_id,
                config.instructions or self.settings.instructions,
                config.voice or None,
            )
            return record, options, False
        try:
            record = await self.store.get(check.session_id(config.session_id))
        except DB_DOWN as exc:
            raise InvalidRequest(
                f"cannot load session {config.session_id}: the database is unavailable ({exc})",
                grpc.StatusCode.UNAVAILABLE,
            ) from None
        if record is None:
            raise InvalidRequest(
                f"session {config.session_id} not found", grpc.StatusCode.NOT_FOUND
            )
        if record.ended_at is not None:
            raise InvalidRequest(
                f"session {record.id} has ended ({record.end_reason}); start a new one",
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        if config.instructions and config.instructions != record.instructions:
            self.store.instructions_changed(record, config.instructions)
        if options.voice is None and record.voice:
            options = dataclasses.replace(options, voice=record.voice)
        return record, options, True

    def _started(self, record: SessionRecord, options: SessionOptions, resumed: bool):
        p = self.providers
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

    def _save(self, record: SessionRecord, session: VoiceSession) -> None:
        record.history = session.conversation.history
        record.next_turn_index = session.conversation.next_turn_index
        self.store.stream_closed(record, session.end_reason)
