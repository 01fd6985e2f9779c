"""STT stage: utterances (and typed text) in, committed user turns out.

With eager transcription (STT_EAGER) the VAD stage hands over an utterance as soon as its
trailing pad is heard, while it still waits out `stop_ms` of silence; the transcription starts
then, and the utterance the VAD finally cuts, being the same audio, takes its result instead
of a second call. If the caller speaks on, that call is cancelled (and was a wasted one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pipeline.audio import PIPELINE_RATE
from pipeline.events import EventSink
from pipeline.frames import TurnStart, UserSpeech, UserText
from pipeline.operator import Operator
from pipeline.providers.base import ProviderError, SpeechToText
from pipeline.turn import State, Turn, now

OpenTurn = Callable[[str, float], Awaitable[Turn | None]]


class SttOperator(Operator[UserSpeech | UserText]):
    """Transcribes each utterance; `open_turn` (None in transcribe-only mode) commits it."""

    def __init__(
        self,
        stt: SpeechToText,
        events: EventSink,
        open_turn: OpenTurn | None,
        *,
        downstream: Operator | None,
    ) -> None:
        super().__init__(downstream)
        self.stt, self.events, self.open_turn = stt, events, open_turn
        self.after_item: Callable[[], Awaitable[None]] | None = None  # told after each input
        self._early: tuple[bytes, asyncio.Task[str]] | None = None

    def transcribe_early(self, audio: bytes) -> None:
        """Start transcribing the utterance the VAD is likely about to cut (16 kHz PCM)."""
        self.drop_early()
        task = asyncio.create_task(self.stt.transcribe(audio, PIPELINE_RATE), name="stt-early")
        task.add_done_callback(_retrieve)
        self._early = (audio, task)

    def drop_early(self) -> None:
        """The caller spoke on (or the session ends): that early transcription is not needed."""
        if self._early is not None:
            self._early[1].cancel()
            self._early = None

    async def _transcribe(self, audio: bytes) -> str:
        early, self._early = self._early, None
        if early is not None:
            if early[0] == audio:
                return await early[1]
            early[1].cancel()
        return await self.stt.transcribe(audio, PIPELINE_RATE)

    async def handle(self, item: UserSpeech | UserText) -> None:
        await self._handle(item)
        if self.after_item is not None:
            await self.after_item()

    async def _handle(self, item: UserSpeech | UserText) -> None:
        if isinstance(item, UserText):
            await self._commit(item.text, item.received_at, None, 0, 0)
            return
        try:
            text = await self._transcribe(item.audio)
        except ProviderError as exc:
            await self.events.error(exc.code, str(exc))
            if self.open_turn is not None:
                await self.events.set_state(State.LISTENING)
            return
        await self._commit(text, item.speech_end_at, item, item.start_offset_ms, item.end_offset_ms)

    async def _commit(
        self, text: str, end_at: float, speech: UserSpeech | None, start_ms: int, end_ms: int
    ) -> None:
        if self.open_turn is None:  # transcribe-only: every segment gets its transcript
            await self.events.transcript(text, start_ms, end_ms, 0)
            return
        if not text.strip():
            return  # a cough or noise: no turn
        turn = await self.open_turn(text, end_at)
        if turn is None:
            return
        if speech is not None:
            turn.vad_stop_at, turn.transcript_at = speech.vad_stop_at, now()
            turn.start_offset_ms, turn.end_offset_ms = start_ms, end_ms
        await self.events.transcript(text, start_ms, end_ms, turn.index)
        await self.forward(TurnStart(turn))


def _retrieve(task: asyncio.Task[str]) -> None:
    """A dropped early call's failure is nobody's error (the real one is made again)."""
    if not task.cancelled():
        task.exception()
