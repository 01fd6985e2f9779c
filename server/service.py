"""voiceagent.v1.VoiceAgentService: Converse, Transcribe and Synthesize."""

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
from server import validation as check
from server.converse import ConverseHandler
from server.session_opener import SessionOpener
from server.validation import InvalidRequest

PROVIDER_STATUS = {
    "provider_not_configured": grpc.StatusCode.FAILED_PRECONDITION,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
}


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
    ) -> AsyncIterator[pb.TranscribeResponse]:
        try:
            first = await anext(requests)
            if first.WhichOneof("request") != "config":
                raise InvalidRequest("the first TranscribeRequest must carry `config`")
            fmt = check.input_format(first.config.input_format, "config.input_format")
            vad = check.vad_params(first.config.vad, self.settings)
        except StopAsyncIteration:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "empty stream: send a config first"
            )
        except InvalidRequest as exc:
            await context.abort(exc.code, str(exc))
        session = TranscriptionSession(self.providers.stt, self.batcher, fmt, vad)
        failure: list[InvalidRequest] = []

        async def read() -> None:
            try:
                async for request in requests:
                    if request.WhichOneof("request") != "audio":
                        raise InvalidRequest(
                            "after the config, TranscribeRequest carries only audio"
                        )
                    await session.push_audio(check.audio_chunk(request.audio, fmt))
                await session.end_input()
            except InvalidRequest as exc:
                failure.append(exc)
                await session.close()

        session.start()
        reader = asyncio.create_task(read())
        try:
            while (event := await session.events.queue.get()) is not None:
                kind = event.WhichOneof("event")
                if kind in ("speech_started", "speech_stopped", "transcript", "error"):
                    response = pb.TranscribeResponse()
                    getattr(response, kind).CopyFrom(getattr(event, kind))
                    yield response
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await session.close()
        if failure:
            await context.abort(failure[0].code, str(failure[0]))

    async def Synthesize(
        self, request: pb.SynthesizeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SynthesizeResponse]:
        tts = self.providers.tts
        try:
            check.bounded_text(request.text, "text", check.MAX_TEXT_CHARS, required=True)
            check.bounded_text(request.voice, "voice", check.MAX_NAME_CHARS)
            out = check.output_format(request.output_format, "output_format")
            text = clean_for_speech(request.text)
            if not text:
                raise InvalidRequest("text has nothing speakable (only emoji, symbols or markup)")
        except InvalidRequest as exc:
            await context.abort(exc.code, str(exc))
        chunker = OutputChunker(tts.sample_rate, out)
        sent = 0
        try:
            async for pcm in tts.stream(text, request.voice or None):
                for chunk in chunker.push(pcm):
                    yield pb.SynthesizeResponse(audio=chunk, offset_ms=round(out.duration_ms(sent)))
                    sent += len(chunk)
        except ProviderError as exc:
            await context.abort(
                PROVIDER_STATUS.get(exc.code, grpc.StatusCode.UNAVAILABLE), str(exc)
            )
        for chunk in chunker.finish():
            yield pb.SynthesizeResponse(audio=chunk, offset_ms=round(out.duration_ms(sent)))
            sent += len(chunk)
