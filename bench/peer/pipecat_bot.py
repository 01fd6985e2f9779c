"""A Pipecat voice bot for the side-by-side benchmark; runs in bench/.venv-pipecat only.

`bench/.venv-pipecat/bin/python bench/peer/pipecat_bot.py --port P --openai-base-url URL`
serves Pipecat's FastAPI WebSocket transport on 127.0.0.1:P, one Pipecat pipeline per
connection, as Pipecat's own examples do: transport in -> Silero VAD (VADProcessor) ->
OpenAI STT -> context aggregator -> OpenAI LLM -> OpenAI TTS -> transport out, every service
pointed at the project's fake OpenAI server. Prints `PORT <n>` when listening.

Wire format (the serializer below, the smallest Pipecat allows): binary messages in are
16 kHz mono int16 PCM frames; binary out is agent audio (24 kHz int16); the VAD's start and
stop go out as JSON text the moment Pipecat's VADProcessor emits them, carrying how many
input bytes the analyzer had consumed then, so the load generator knows which frame
completed the debounce (the same definition of frame -> VAD event as for our server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    Frame,
    InputAudioRawFrame,
    OutputAudioRawFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.base_serializer import FrameSerializer
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

IN_RATE, OUT_RATE = 16_000, 24_000


class CountingSilero(SileroVADAnalyzer):
    """Pipecat's Silero analyzer, counting the bytes it has been given (measurement only)."""

    consumed = 0

    async def analyze_audio(self, buffer: bytes):
        self.consumed += len(buffer)
        return await super().analyze_audio(buffer)


class RawSerializer(FrameSerializer):
    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, OutputAudioRawFrame):
            return frame.audio
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        if isinstance(data, bytes):
            return InputAudioRawFrame(audio=data, sample_rate=IN_RATE, num_channels=1)
        return None


class VadReporter(FrameProcessor):
    """Right after the VADProcessor: VAD events to the client as they happen."""

    def __init__(self, websocket: WebSocket, vad: CountingSilero) -> None:
        super().__init__()
        self.websocket, self.vad = websocket, vad

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        kind = None
        if isinstance(frame, VADUserStartedSpeakingFrame):
            kind = "speech_started"
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            kind = "speech_stopped"
        if kind is not None and direction == FrameDirection.DOWNSTREAM:
            msg = json.dumps({"event": kind, "consumed": self.vad.consumed})
            await self.websocket.send_text(msg)
        await self.push_frame(frame, direction)


def app(base_url: str, start_s: float, stop_s: float) -> FastAPI:
    api = FastAPI()

    @api.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_in_sample_rate=IN_RATE,
                audio_out_enabled=True,
                audio_out_sample_rate=OUT_RATE,
                serializer=RawSerializer(),
            ),
        )
        vad = CountingSilero(params=VADParams(start_secs=start_s, stop_secs=stop_s))
        key = "bench-key"
        stt = OpenAISTTService(api_key=key, base_url=base_url, model="gpt-4o-mini-transcribe")
        llm = OpenAILLMService(api_key=key, base_url=base_url, model="gpt-4o-mini")
        tts = OpenAITTSService(
            api_key=key, base_url=base_url, model="gpt-4o-mini-tts", voice="alloy",
            sample_rate=OUT_RATE,
        )  # fmt: skip
        context = LLMContext([{"role": "system", "content": "You are a helpful assistant."}])
        pair = LLMContextAggregatorPair(context)
        pipeline = Pipeline(
            [
                transport.input(),
                VADProcessor(vad_analyzer=vad),
                VadReporter(websocket, vad),
                stt,
                pair.user(),
                llm,
                tts,
                transport.output(),
                pair.assistant(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        )
        await PipelineRunner(handle_sigint=False).run(task)

    return api


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--openai-base-url", required=True)
    p.add_argument("--start-ms", type=int, default=200)
    p.add_argument("--stop-ms", type=int, default=400)
    a = p.parse_args()
    # Pipecat logs at DEBUG by default (several lines per turn); a deployment would not.
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    config = uvicorn.Config(
        app(a.openai_base_url, a.start_ms / 1000, a.stop_ms / 1000),
        host="127.0.0.1", port=a.port, log_level="warning", ws_max_size=1 << 20,
    )  # fmt: skip
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        print(f"PORT {a.port}", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()
