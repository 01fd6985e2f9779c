"""Output stage: agent audio to the client at real-time pace, and turn completion.

Audio is released at playback pace plus a small lead (a jitter buffer for the client), not
as fast as TTS makes it: then a barge-in stops the agent within the lead, and "what was sent"
is close to what the user heard, which is what history keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.frames import AgentAudio, EndOfTurn
from pipeline.operator import TurnOperator
from pipeline.turn import State, Turn, now


class OutputOperator(TurnOperator):
    inbox_size = 16

    def __init__(
        self,
        conversation: Conversation,
        events: EventSink,
        output_rate: int,
        *,
        lead_ms: float,
    ) -> None:
        super().__init__(None)
        self.conversation, self.events = conversation, events
        self.output_rate = output_rate
        self.lead_s = lead_ms / 1000.0
        self._origin: tuple[Turn, float] | None = None  # when the turn's audio position 0 plays
        self.on_closed: Callable[[Turn], Awaitable[None]] | None = None  # after each turn

    async def handle(self, item: AgentAudio | EndOfTurn) -> None:  # type: ignore[override]
        turn = item.turn
        if isinstance(item, EndOfTurn):
            await self.complete(turn)
            return
        position = turn.audio_sent_ms / 1000.0
        if self._origin is None or self._origin[0] is not turn:
            self._origin = (turn, now() - position)
        origin = self._origin[1]
        wait = origin + position - self.lead_s - now()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing: the client's buffer is full enough
        elif wait < -self.lead_s:
            # TTS fell behind and the client ran dry: restart the clock instead of bursting.
            self._origin = (turn, now() - position)
        if turn.first_audio_at is None:
            turn.first_audio_at = now()
            await self.events.set_state(State.SPEAKING)
        await self.events.audio(turn, item.audio, turn.audio_sent_ms)
        turn.audio_sent_ms += len(item.audio) / 2 / self.output_rate * 1000.0

    async def complete(self, turn: Turn) -> None:
        """Close a turn: history keeps what was heard, the client gets the turn's metrics."""
        if turn.closed:
            return
        said = self.conversation.close_turn(turn)
        if turn.interrupted:
            await self.events.interrupted(turn, said)
        await self.events.turn_completed(turn, said)
        if self.conversation.live is None:
            await self.events.set_state(State.LISTENING)
        if self.on_closed is not None:
            await self.on_closed(turn)
