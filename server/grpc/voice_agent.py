"""voiceagent.v1.VoiceAgentService: Converse (converse.py), Transcribe and Synthesize."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import grpc
from voiceagent.v1 import voice_agent_service_pb2 as pb
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc
from voiceagent.v1.converse_pb2 import ConverseRequest

from pipeline.audio import OutputChunker
from pipeline.providers.base import ProviderError
from pipeline.text import clean_for_speech
from pipeline.transcription import TranscriptionSession
from server.auth.caller import CONVERSE
from server.grpc import requests as decode
from server.grpc.auth import current_caller
from server.grpc.converse import ConverseHandler, undecodable
from server.grpc.status import abort, provider_status
from server.sessions import checks
from server.sessions.errors import RequestError
from server.sessions.opener import SessionOpener

TRANSCRIBE_EVENTS = ("speech_started", "speech_stopped", "transcript", "error")


async def write_all(events: AsyncGenerator, context: grpc.aio.ServicerContext) -> None:
    """Send a handler's events with context.write, then close the generator.

    A coroutine handler rather than an async-generator one: grpc-aio never closes a response
    generator itself, so a client that vanished while a write was pending would leave the
    generator suspended at `yield` and its session registered until garbage collection. Here
    the cancellation lands in this coroutine and `aclose` runs the generator's cleanup now.
    """
    try:
        async for event in events:
            await context.write(event)
    finally:
        await events.aclose()


class VoiceAgentService(pb_grpc.VoiceAgentServiceServicer):
    def __init__(self, opener: SessionOpener) -> None:
        self.settings, self.providers = opener.settings, opener.providers
        self.batcher = opener.batcher
        self.converse = ConverseHandler(opener)

    async def Converse(
        self, requests: AsyncIterator[ConverseRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await write_all(self.converse(requests, context), context)

    async def Transcribe(
        self, requests: AsyncIterator[pb.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await write_all(self._transcribe(requests, context), context)

    async def _transcribe(
        self, requests: AsyncIterator[pb.TranscribeRequest], context: grpc.aio.ServicerContext
    ) -> AsyncGenerator[pb.TranscribeResponse, None]:
        try:
            current_caller().require(CONVERSE)
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                raise RequestError("empty stream: send a config first") from None
            except Exception as exc:
                raise undecodable(exc) from None
            if first.WhichOneof("request") != "config":
                raise RequestError("the first TranscribeRequest must carry `config`")
            fmt = decode.input_format(first.config.input_format, "config.input_format")
            vad = decode.vad_params(first.config.vad, self.settings)
        except RequestError as exc:
            await abort(context, exc)
        session = TranscriptionSession(self.providers.stt, self.batcher, fmt, vad=vad)
        failure: list[RequestError] = []

        async def read() -> None:
            try:
                async for request in requests:
                    if request.WhichOneof("request") != "audio":
                        raise RequestError("after the config, TranscribeRequest carries only audio")
                    await session.push_audio(checks.audio_chunk(request.audio, fmt))
                await session.end_input()
            except RequestError as exc:
                failure.append(exc)
                await session.close()
            except Exception as exc:  # undecodable request: end the stream with a status
                failure.append(undecodable(exc))
                await session.close()

        session.start()
        reader = asyncio.create_task(read())
        try:
            async for event in session.events:
                kind = event.WhichOneof("event")
                if kind in TRANSCRIBE_EVENTS:
                    response = pb.TranscribeResponse()
                    getattr(response, kind).CopyFrom(getattr(event, kind))
                    yield response
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.close()
        if failure:
            await abort(context, failure[0])

    async def Synthesize(
        self, request: pb.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        tts = self.providers.tts
        try:
            current_caller().require(CONVERSE)
            checks.bounded_text(request.text, "text", checks.MAX_TEXT_CHARS, required=True)
            checks.bounded_text(request.voice, "voice", checks.MAX_NAME_CHARS)
            out = decode.output_format(request.output_format, "output_format")
            text = clean_for_speech(request.text)
            if not text:
                raise RequestError("text has nothing speakable (only emoji, symbols or markup)")
        except RequestError as exc:
            await abort(context, exc)
        chunker = OutputChunker(tts.sample_rate, out)
        sent = 0
        try:
            async for pcm in tts.stream(text, request.voice or None):
                for chunk in chunker.push(pcm):
                    yield pb.SynthesizeResponse(audio=chunk, offset_ms=round(out.duration_ms(sent)))
                    sent += len(chunk)
        except ProviderError as exc:
            await context.abort(provider_status(exc.code), str(exc))
        for chunk in chunker.finish():
            yield pb.SynthesizeResponse(audio=chunk, offset_ms=round(out.duration_ms(sent)))
            sent += len(chunk)
