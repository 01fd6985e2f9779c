"""Chat stage: a user turn in, streamed reply text out (to the client) and sentences (to TTS)."""

from __future__ import annotations

import logging

from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.frames import EndOfTurn, Sentence, TurnStart
from pipeline.operator import Operator, TurnOperator
from pipeline.providers.base import ChatModel, ProviderError
from pipeline.text import SentenceSplitter, clean_for_speech
from pipeline.turn import State, now

log = logging.getLogger(__name__)


class ChatOperator(TurnOperator):
    inbox_size = 4

    def __init__(
        self,
        chat: ChatModel,
        conversation: Conversation,
        events: EventSink,
        *,
        downstream: Operator | None,
        speak: bool = True,
    ) -> None:
        super().__init__(downstream)
        self.chat, self.conversation, self.events = chat, conversation, events
        self.speak = speak

    async def handle(self, item: TurnStart) -> None:  # type: ignore[override]
        turn = item.turn
        await self.events.set_state(State.THINKING)
        splitter = SentenceSplitter()
        turn.llm_request_at = now()
        try:
            async for piece in self.chat.stream(self.conversation.messages()):
                if turn.llm_first_token_at is None:
                    turn.llm_first_token_at = now()
                turn.agent_text += piece
                turn.llm_pieces += 1
                await self.events.text_delta(turn, piece)
                for sentence in splitter.push(piece):
                    await self._speak(turn, sentence)
        except ProviderError as exc:
            turn.failed = True
            await self.events.error(exc.code, str(exc), turn.index)
        except Exception as exc:  # a provider bug must still end the turn, not strand it
            log.exception("chat provider %s failed", self.chat.name)
            turn.failed = True
            await self.events.error("provider_failed", f"chat provider failed: {exc}", turn.index)
        turn.llm_done_at = now()
        for sentence in splitter.flush():
            await self._speak(turn, sentence)
        await self.forward(EndOfTurn(turn))

    async def _speak(self, turn, text: str) -> None:
        spoken = clean_for_speech(text) if self.speak else ""
        if spoken:
            await self.forward(Sentence(turn, spoken))
