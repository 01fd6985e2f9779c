"""Speech-to-text only: the VAD and STT stages without an agent (the Transcribe RPC)."""

from __future__ import annotations

import asyncio

from pipeline.audio import PcmFormat
from pipeline.events import EventSink
from pipeline.frames import END
from pipeline.operators.stt import SttOperator
from pipeline.operators.vad import VadOperator
from pipeline.providers.base import SpeechToText
from pipeline.silero import SileroBatcher
from pipeline.turn import State
from pipeline.vad import VadParams


class TranscriptionSession:
    """Audio in; speech started/stopped and one transcript per VAD segment out."""

    def __init__(
        self, stt: SpeechToText, batcher: SileroBatcher, fmt: PcmFormat, *, vad: VadParams
    ) -> None:
        self.events = EventSink()
        self.stt = SttOperator(stt, self.events, None, downstream=None)
        self.vad = VadOperator(
            batcher, vad, fmt, events=self.events, on_speech_start=_nothing, downstream=self.stt
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.vad.run())
                group.create_task(self.stt.run())
        except BaseException:
            self.events.end(State.ENDED)  # cut short: never wait on a reader that may be gone
            raise
        await self.events.finish(State.ENDED)

    async def push_audio(self, pcm: bytes) -> None:
        await self.vad.put(pcm)

    async def end_input(self) -> None:
        await self.vad.put(END)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _nothing() -> None:
    return None
