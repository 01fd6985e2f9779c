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
from collections.abc import Callable, Coroutine
from dataclasses import KW_ONLY, dataclass
from typing import Any, Protocol

from pipeline.audio import PIPELINE_RATE, PcmFormat
from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.frames import END, TurnStart, UserSpeech, UserText
from pipeline.operator import Operator
from pipeline.operators.chat import ChatOperator
from pipeline.operators.output import OutputOperator
from pipeline.operators.stt import SttOperator
from pipeline.operators.tts import TtsOperator
from pipeline.operators.vad import VadOperator
from pipeline.providers.base import Providers
from pipeline.recording import CallRecorder
from pipeline.silero import SileroBatcher
from pipeline.tools.lifecycle import ResultRejected, ToolCall
from pipeline.tools.runner import ToolRunner
from pipeline.tools.spec import ToolOptions
from pipeline.tools.webhook import WebhookCaller
from pipeline.turn import State, Turn, now
from pipeline.vad import VadParams, VadState

log = logging.getLogger(__name__)
MAX_PLAYOUT_S = 2.0  # end_call: the longest a client can still be playing (unpaced REST: none)


class Recorder(Protocol):
    """Where a session's history goes as it happens; must not block (write-behind)."""

    def turn_closed(self, turn: Turn, spoken: str) -> None: ...

    def state_changed(self, state: State) -> None: ...

    def tool_call_done(self, call: ToolCall) -> None: ...


@dataclass(frozen=True)
class SessionOptions:
    input_format: PcmFormat | None  # None: text-only session, no VAD stage
    output_format: PcmFormat
    voice: str | None = None
    _: KW_ONLY
    vad: VadParams = VadParams()
    output_lead_ms: float = 300.0
    speak: bool = True  # False: replies are text only (no TTS work, no agent audio)
    tools: ToolOptions = ToolOptions()
    eager_stt: bool = False  # transcribe during the VAD's stop wait (operators/stt.py)


class VoiceSession:
    def __init__(
        self,
        session_id: str,
        providers: Providers,
        batcher: SileroBatcher,
        conversation: Conversation,
        options: SessionOptions,
        recorder: Recorder | None = None,
        *,
        webhook: WebhookCaller | None = None,
    ) -> None:
        self.id = session_id
        self.conversation = conversation
        self.events = EventSink()
        self.tools = ToolRunner(
            options.tools.specs, self.events, session_id=session_id, webhook=webhook
        )
        self.tools.on_late = self._late_result
        self.tools.known_ids = {m.tool_call_id for m in conversation.history if m.tool_call_id}
        if recorder is not None:
            conversation.on_turn_closed = recorder.turn_closed
            conversation.turn_stored = getattr(recorder, "stored", None)
            self.events.on_state = recorder.state_changed
            self.tools.on_done = recorder.tool_call_done
        out = options.output_format
        self.output = OutputOperator(
            conversation, self.events, out.sample_rate, lead_ms=options.output_lead_ms
        )
        self.output.on_closed = self._turn_closed
        self.tts = TtsOperator(
            providers.tts, options.voice, out, events=self.events, downstream=self.output
        )
        self.chat = ChatOperator(
            providers.chat,
            conversation,
            self.events,
            downstream=self.tts,
            speak=options.speak,
            tools=self.tools if options.tools.specs else None,
            tool_options=options.tools,
        )
        self.stt = SttOperator(providers.stt, self.events, self._open_turn, downstream=self.chat)
        self.stt.after_item = lambda: self._follow_up(stt_done=True)
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
        if self.vad is not None and options.eager_stt:
            self.vad.on_settled = self.stt.transcribe_early
            self.vad.on_resumed = self.stt.drop_early
        self.stages: list[Operator] = [
            s for s in (self.vad, self.stt, self.chat, self.tts, self.output) if s is not None
        ]
        self._supervisor: asyncio.Task[None] | None = None
        self._input_ended = False
        self.end_reason = ""
        self.last_input_at = time.monotonic()
        self.on_audio_in: Callable[[int], None] | None = None  # observers (metrics): bytes in
        self.audio_tap: CallRecorder | None = None  # a recording, when this stream has one
        self._background: set[asyncio.Task[None]] = set()  # follow-ups, the agent's hang-up

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

    async def respond(self, user_text: str = "") -> Turn:
        """Reply now, skipping speech-to-text: an edge that holds user input until its client
        asks for a reply (Realtime's `response.create`). `user_text` ("": none) joins history
        as this turn's user message; the chat stage answers the history as it stands."""
        self.last_input_at = time.monotonic()
        turn = await self._open_turn(user_text, now())
        await self.chat.put(TurnStart(turn))
        return turn

    async def interrupt(self) -> None:
        """Barge-in: stop the live turn everywhere and keep only what was heard."""
        turn = self.conversation.live
        if turn is None or turn.closed:
            return
        turn.interrupted = True
        await self.tools.barge_in(turn)  # before the stages: cancellable calls stop with it
        for stage in (self.chat, self.tts, self.output):
            stage.cancel_turn(turn)
        await self.output.complete(turn)

    def set_tools(self, options: ToolOptions) -> None:
        """New tools for the replies from now on (a reply in flight keeps what it was offered;
        calls already made keep their own declarations)."""
        self.tools.specs = {s.name: s for s in options.specs}
        self.chat.tools = self.tools if options.specs else None
        self.chat.tool_options = options

    async def tool_result(self, call_id: str, output: str, error: str) -> None:
        """A client's answer to one of its tool calls; one that cannot apply is reported as an
        `invalid_tool_result` error and the session goes on."""
        self.last_input_at = time.monotonic()
        try:
            self.tools.answer(call_id, output, error)
        except ResultRejected as exc:
            await self.events.error("invalid_tool_result", str(exc))

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
        for task in self._background:
            if task is not asyncio.current_task():
                task.cancel()
        self.stt.drop_early()
        if self._supervisor is None:
            self.events.end(State.ENDED)
        elif not self._supervisor.done():
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        turn = self.conversation.live
        if turn is not None and not turn.closed:
            turn.interrupted = True
            self.conversation.close_turn(turn)
        # Last: side-effecting server calls finish, and their results join the history
        # that is saved once this returns.
        await self.tools.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=f"{name}:{self.id}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _late_result(self, call: ToolCall) -> None:
        self.conversation.add_late_result(call)
        self._spawn(self._follow_up(), "follow-up")

    async def _turn_closed(self, turn: Turn) -> None:
        if turn.interrupted:
            return  # new input cut it: that input's reply will see any kept result
        if await self.tools.hangups_heard(turn):
            self.end_reason = self.end_reason or "agent_hung_up"
            self._spawn(self._hang_up(), "hang-up")
            return
        await self._follow_up()

    async def _hang_up(self) -> None:
        """end_call: the goodbye's audio is sent; the client plays the last `lead` of it."""
        await asyncio.sleep(min(self.output.lead_s, MAX_PLAYOUT_S))
        await self.close("agent_hung_up")

    async def _follow_up(self, *, stt_done: bool = False) -> None:
        """A kept tool result no reply has seen: the agent answers it once the line is free
        (no reply in flight, the user not speaking or being transcribed)."""
        if not self.conversation.unanswered or self._input_ended:
            return
        live = self.conversation.live
        if live is not None and not live.closed:
            return  # that reply's close comes back here
        if self.vad is not None and self.vad.segmenter.machine.state != VadState.QUIET:
            return  # the user's turn first; STT's after_item comes back here
        transcribing = self.stt.working and not stt_done
        if transcribing or not self.stt.inbox.empty() or self.end_reason:
            return
        turn = self.conversation.open_turn("", now())
        await self.chat.put(TurnStart(turn))

    async def _on_speech_start(self) -> None:
        await self.interrupt()

    async def _open_turn(self, text: str, speech_end_at: float) -> Turn:
        await self.interrupt()
        return self.conversation.open_turn(text, speech_end_at)
