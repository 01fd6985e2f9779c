"""A conversation's memory: instructions, history and the turn in flight. Plain logic.

At most one agent turn is live at a time: a new user input while the agent thinks or speaks
is a barge-in, which closes the live turn first. History keeps what the user heard, so an
interrupted reply is stored as its spoken prefix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pipeline.providers.base import ChatMessage
from pipeline.turn import Turn

DEFAULT_INSTRUCTIONS = (
    "You are a helpful voice assistant. Your replies are spoken aloud, so answer in one or two "
    "short sentences of plain text, without lists, markdown or emoji."
)


class Conversation:
    def __init__(
        self,
        instructions: str = DEFAULT_INSTRUCTIONS,
        history: list[ChatMessage] | None = None,
        next_turn_index: int = 1,
    ) -> None:
        self.instructions = instructions
        self.history: list[ChatMessage] = list(history or [])
        self.next_turn_index = next_turn_index
        self.live: Turn | None = None
        # Told of every closed turn and what was heard of it (persistence hooks in here).
        self.on_turn_closed: Callable[[Turn, str], None] | None = None
        # Awaited before a closed turn is reported complete: persistence makes it durable
        # (bounded), so a turn the client saw completed survives a crash of this process.
        self.turn_stored: Callable[[], Awaitable[object]] | None = None

    async def stored(self) -> None:
        if self.turn_stored is not None:
            await self.turn_stored()

    def open_turn(self, user_text: str, speech_end_at: float) -> Turn:
        """Commit a user input as a new turn; the caller has closed any live turn first."""
        turn = Turn(index=self.next_turn_index, user_text=user_text, speech_end_at=speech_end_at)
        self.next_turn_index += 1
        if user_text:  # "": an agent-only turn (the dead-air recovery line), no user message
            self.history.append(ChatMessage("user", user_text))
        self.live = turn
        return turn

    def messages(self) -> list[ChatMessage]:
        system = [ChatMessage("system", self.instructions)] if self.instructions else []
        return system + self.history

    def close_turn(self, turn: Turn) -> str:
        """Record the agent's reply as heard; returns that text."""
        said = turn.spoken_text()
        turn.closed = True
        if said:
            self.history.append(ChatMessage("assistant", said))
        if self.live is turn:
            self.live = None
        if self.on_turn_closed is not None:
            self.on_turn_closed(turn, said)
        return said
