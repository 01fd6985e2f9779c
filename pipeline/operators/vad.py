"""VAD stage: client audio in, speech events and utterances out.

Converts the client's format to 16 kHz mono with a streaming resampler, cuts 32 ms windows,
asks the shared Silero batcher for each window's speech probability (the batcher turns
the int16 windows into floats once per batch, off the event loop) and lets the segmenter
decide. Quiet windows, and those within a few dB of the line's own steady noise, skip the
model once it has settled on silence (`QuietGate`): most of a call is the caller listening,
and the model is most of a frame's cost. A speech start is reported at once (it may be a
barge-in); a finished utterance goes to speech-to-text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.audio import PIPELINE_RATE, PcmFormat, StreamResampler
from pipeline.events import EventSink
from pipeline.frames import UserSpeech
from pipeline.operator import Operator
from pipeline.silero import SileroBatcher, VadStream
from pipeline.turn import now
from pipeline.vad import (
    WINDOW_BYTES,
    SpeechEnd,
    SpeechSegmenter,
    SpeechStart,
    VadParams,
    VadState,
)
from pipeline.vad_gate import QuietGate, Skip


class VadOperator(Operator[bytes]):
    inbox_size = 64  # ~1.3 s of 20 ms frames before the client is made to wait

    def __init__(
        self,
        batcher: SileroBatcher,
        params: VadParams,
        input_format: PcmFormat,
        *,
        events: EventSink,
        on_speech_start: Callable[[], Awaitable[None]],
        downstream: Operator | None,
    ) -> None:
        super().__init__(downstream)
        self.batcher = batcher
        self.events = events
        self.on_speech_start = on_speech_start
        self.resampler = StreamResampler(input_format, PIPELINE_RATE)
        self.segmenter = SpeechSegmenter(params)
        self.gate = QuietGate(params)
        self.stream = VadStream()
        # Eager transcription (see operators/stt.py): an utterance about to be cut, and the
        # caller speaking on after all.
        self.on_settled: Callable[[bytes], None] | None = None
        self.on_resumed: Callable[[], None] | None = None
        self._pending = bytearray()
        self._last_speech_at = now()

    def set_params(self, params: VadParams) -> None:
        """New VAD settings from the next window on (a segment in progress is dropped)."""
        self.segmenter = SpeechSegmenter(params)
        gate = QuietGate(params)
        gate.adopt(self.gate)  # the model's state goes on, and what the gate learnt with it
        self.gate = gate

    async def handle(self, item: bytes) -> None:
        await self._windows(self.resampler.process(item))

    async def finish(self) -> None:
        await self._windows(self.resampler.flush())
        for end in self.segmenter.finish():
            await self._speech_end(end)

    async def _windows(self, pcm: bytes) -> None:
        self._pending.extend(pcm)
        while len(self._pending) >= WINDOW_BYTES:
            window = bytes(self._pending[:WINDOW_BYTES])
            del self._pending[:WINDOW_BYTES]
            if (skip := self.gate.check(window)) is not None:
                self.batcher.skip(self.stream, window, keep_state=skip is Skip.NOISE)
                probability = 0.0
            else:
                probability = await self.batcher.probability(self.stream, window)
                self.gate.heard(probability)
            if self.on_settled is None:
                events = self.segmenter.push(window, probability)
            else:
                events = self._push_eager(window, probability)
            for event in events:
                if isinstance(event, SpeechStart):
                    await self.events.speech_started(event.offset_ms)
                    await self.on_speech_start()
                else:
                    await self._speech_end(event)
            if self.segmenter.machine.last_was_speech:
                self._last_speech_at = now()

    def _push_eager(self, window: bytes, probability: float) -> list[SpeechStart | SpeechEnd]:
        """Push, then tell eager transcription of a settled utterance or of speech going on."""
        machine = self.segmenter.machine
        pausing = machine.state is VadState.STOPPING
        events = self.segmenter.push(window, probability)
        if (audio := self.segmenter.settled_audio()) is not None:
            assert self.on_settled is not None
            self.on_settled(audio)
        elif pausing and machine.state is VadState.SPEAKING and self.on_resumed is not None:
            self.on_resumed()
        return events

    async def _speech_end(self, end: SpeechEnd) -> None:
        await self.events.speech_stopped(end.start_offset_ms, end.end_offset_ms)
        await self.forward(
            UserSpeech(
                audio=end.audio,
                start_offset_ms=end.start_offset_ms,
                end_offset_ms=end.end_offset_ms,
                speech_end_at=self._last_speech_at,
                vad_stop_at=now(),
            )
        )
