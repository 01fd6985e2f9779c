"""A live voice session: the stages wired in data-path order, and their lifecycle.

    client audio -> VAD -> STT -> chat -> TTS -> output (paced) -> events to the client
                               ^ typed text joins here

The session owns one task per stage under a TaskGroup, so closing it (hang-up, client gone,
shutdown) cancels every stage and whatever each awaits. End of input instead flows through the
stages as an END marker, so pending speech and replies finish before the event stream closes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from pipeline.audio import PIPELINE_RATE, PcmFormat
from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.frames import END, UserSpeech, UserText
from pipeline.operator import Operator
from pipeline.operators.chat import ChatOperator
from pipeline.operators.output import OutputOperator
from pipeline.operators.stt import SttOperator
from pipeline.operators.tts import TtsOperator
from pipeline.operators.vad import VadOperator
from pipeline.providers.base import Providers
from pipeline.recording import CallRecorder
from pipeline.silero import SileroBatcher
from pipeline.turn import State, Turn, now
from pipeline.vad import VadParams

log = logging.getLogger(__name__)


class Recorder(Protocol):
    """Where a session's history goes as it happens; must not block (write-behind)."""

    def turn_closed(self, turn: Turn, spoken: str) -> None: ...

    def state_changed(self, state: State) -> None: ...


@dataclass(frozen=True)
class SessionOptions:
    input_format: PcmFormat | None  # None: text-only session, no VAD stage
    output_format: PcmFormat
    voice: str | None = None
    _: KW_ONLY
    vad: VadParams = VadParams()
    output_lead_ms: float = 300.0
    speak: bool = True  # False: replies are text only (no TTS work, no agent audio)


class VoiceSession:
    def __init__(
        self,
        session_id: str,
        providers: Providers,
        batcher: SileroBatcher,
        conversation: Conversation,
        options: SessionOptions,
        recorder: Recorder | None = None,
    ) -> None:
        self.id = session_id
        self.conversation = conversation
        self.events = EventSink()
        if recorder is not None:
            conversation.on_turn_closed = recorder.turn_closed
            conversation.turn_stored = getattr(recorder, "stored", None)
            self.events.on_state = recorder.state_changed
        out = options.output_format
        self.output = OutputOperator(
            conversation, self.events, out.sample_rate, lead_ms=options.output_lead_ms
        )
        self.tts = TtsOperator(
            providers.tts, options.voice, out, events=self.events, downstream=self.output
        )
        self.chat = ChatOperator(
            providers.chat, conversation, self.events, downstream=self.tts, speak=options.speak
        )
        self.stt = SttOperator(providers.stt, self.events, self._open_turn, downstream=self.chat)
        self.vad = (
            VadOperator(
                batcher,
                options.vad,
                options.input_format,
                events=self.events,
                on_speech_start=self._on_speech_start,
                downstream=self.stt,
            )
            if options.input_format is not None
            else None
        )
        self.stages: list[Operator] = [
            s for s in (self.vad, self.stt, self.chat, self.tts, self.output) if s is not None
        ]
        self._supervisor: asyncio.Task[None] | None = None
        self._input_ended = False
        self.end_reason = ""
        self.last_input_at = time.monotonic()
        self.on_audio_in: Callable[[int], None] | None = None  # observers (metrics): bytes in
        self.audio_tap: CallRecorder | None = None  # a recording, when this stream has one

    def idle_s(self, at: float) -> float:
        """How long (at monotonic time `at`) nothing has happened: no input from the client,
        no event to it, and no turn in flight. 0 while the agent owes or is giving a reply."""
        turn = self.conversation.live
        if turn is not None and not turn.closed:
            return 0.0
        return max(0.0, at - max(self.last_input_at, self.events.last_event_at))

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name=f"session:{self.id}")

    async def _supervise(self) -> None:
        try:
            await self.events.set_state(State.LISTENING)
            async with asyncio.TaskGroup() as group:
                for stage in self.stages:
                    group.create_task(stage.run(), name=f"{stage.name}:{self.id}")
        except BaseException:
            self.events.end(State.ENDED)  # cut short: the reader may be gone, never wait
            raise
        await self.events.finish(State.ENDED)

    async def push_audio(self, pcm: bytes) -> None:
        self.last_input_at = time.monotonic()
        if self.vad is None:
            raise RuntimeError("session has no audio input format")
        if self.on_audio_in is not None:
            self.on_audio_in(len(pcm))
        if self.audio_tap is not None:
            self.audio_tap.caller_audio(pcm)
        await self.vad.put(pcm)

    async def push_text(self, text: str) -> None:
        self.last_input_at = time.monotonic()
        await self.interrupt()  # typing while the agent talks is a barge-in too
        await self.stt.put(UserText(text, now()))

    async def push_utterance(self, pcm16k: bytes) -> None:
        """A whole recorded utterance (16 kHz mono PCM, e.g. an uploaded file): it is already
        one turn, so it skips the VAD and goes straight to speech-to-text."""
        self.last_input_at = time.monotonic()
        if self.audio_tap is not None:
            self.audio_tap.caller_utterance(pcm16k)
        await self.interrupt()  # a new utterance while the agent talks is a barge-in too
        received = now()
        duration_ms = round(len(pcm16k) / 2 / PIPELINE_RATE * 1000)
        await self.stt.put(
            UserSpeech(pcm16k, 0, duration_ms, speech_end_at=received, vad_stop_at=received)
        )

    async def interrupt(self) -> None:
        """Barge-in: stop the live turn everywhere and keep only what was heard."""
        turn = self.conversation.live
        if turn is None or turn.closed:
            return
        turn.interrupted = True
        for stage in (self.chat, self.tts, self.output):
            stage.cancel_turn(turn)
        await self.output.complete(turn)

    async def end_input(self) -> None:
        """No more input: finish pending speech and replies, then end the event stream."""
        if not self._input_ended:
            self._input_ended = True
            await self.stages[0].put(END)

    @property
    def input_ended(self) -> bool:
        """End of input was asked for: no new turn will come (the dead-air watchdog asks)."""
        return self._input_ended

    async def close(self, reason: str = "closed") -> None:
        """Stop now (hang-up, client gone, shutdown): every stage is cancelled."""
        self.end_reason = self.end_reason or reason
        if self._supervisor is None:
            self.events.end(State.ENDED)
        elif not self._supervisor.done():
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        turn = self.conversation.live
        if turn is not None and not turn.closed:
            turn.interrupted = True
            self.conversation.close_turn(turn)

    async def _on_speech_start(self) -> None:
        await self.interrupt()

    async def _open_turn(self, text: str, speech_end_at: float) -> Turn:
        await self.interrupt()
        return self.conversation.open_turn(text, speech_end_at)
