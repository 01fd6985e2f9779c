"""TTS stage: sentences in, agent audio chunks in the client's output format out."""

from __future__ import annotations

from pipeline.audio import OutputChunker, PcmFormat
from pipeline.events import EventSink
from pipeline.frames import AgentAudio, EndOfTurn, Sentence
from pipeline.operator import Operator, TurnOperator
from pipeline.providers.base import ProviderError, TextToSpeech
from pipeline.turn import SpokenSentence, Turn, now


class TtsOperator(TurnOperator):
    inbox_size = 8

    def __init__(
        self,
        tts: TextToSpeech,
        voice: str | None,
        output: PcmFormat,
        *,
        events: EventSink,
        downstream: Operator | None,
    ) -> None:
        super().__init__(downstream)
        self.tts, self.voice, self.output, self.events = tts, voice, output, events
        self._failed_turn: Turn | None = None

    async def handle(self, item: Sentence | EndOfTurn) -> None:  # type: ignore[override]
        if isinstance(item, EndOfTurn):
            await self.forward(item)
            return
        turn = item.turn
        if self._failed_turn is turn:
            return  # TTS already failed this turn; don't pay retries per sentence
        if turn.tts_request_at is None:
            turn.tts_request_at = now()
        sentence = turn.add_sentence(item.text)
        chunker = OutputChunker(self.tts.sample_rate, self.output)
        try:
            async for pcm in self.tts.stream(item.text, self.voice):
                if turn.tts_first_byte_at is None:
                    turn.tts_first_byte_at = now()
                for chunk in chunker.push(pcm):
                    await self._send(turn, sentence, chunk)
        except ProviderError as exc:
            self._failed_turn, turn.failed = turn, True
            await self.events.error(exc.code, str(exc), turn.index)
        for chunk in chunker.finish():
            await self._send(turn, sentence, chunk)
        sentence.complete = True
        turn.tts_done_at = now()

    async def _send(self, turn: Turn, sentence: SpokenSentence, chunk: bytes) -> None:
        sentence.audio_ms += self.output.duration_ms(len(chunk))
        await self.forward(AgentAudio(turn, chunk, sentence))
