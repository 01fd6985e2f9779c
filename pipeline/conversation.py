"""A conversation's memory: instructions, history and the turn in flight. Plain logic.

At most one agent turn is live at a time: a new user input while the agent thinks or speaks
is a barge-in, which closes the live turn first. History keeps what the user heard, so an
interrupted reply is stored as its spoken prefix.

Tool calls go into history where the reply made them, each followed by its result, so text
spoken before a call is kept exactly as heard and the model never repeats it. A result that
comes after its turn closed (a side-effecting call finishing after a barge-in) is appended
when it comes and marked unanswered until a chat request has seen it.
"""

from __future__ import annotations

from collections.abc import Callable

from pipeline.providers.base import ChatMessage, ToolCallRequest
from pipeline.tools.lifecycle import Outcome, ToolCall
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
        self.unanswered = False  # a late tool result no chat request has seen yet

    def open_turn(self, user_text: str, speech_end_at: float) -> Turn:
        """Commit a user input as a new turn; the caller has closed any live turn first."""
        turn = Turn(index=self.next_turn_index, user_text=user_text, speech_end_at=speech_end_at)
        self.next_turn_index += 1
        if user_text:  # "": an agent-only turn (the dead-air recovery line), no user message
            self.history.append(ChatMessage("user", user_text))
        self.live = turn
        return turn

    def messages(self) -> list[ChatMessage]:
        """What a chat request sends (so, from here on, every result in it has been seen)."""
        self.unanswered = False
        system = [ChatMessage("system", self.instructions)] if self.instructions else []
        return system + self.history

    @staticmethod
    def reply_messages(turn: Turn, heard: str) -> list[ChatMessage]:
        """A reply as history: the heard text cut where the model called tools, each kept call
        (it ran to an outcome other than cancelled) followed by its result."""
        words, start, out = heard.split(), 0, []
        for step in turn.steps:
            n = len(turn.agent_text[start : step.text_end].split())
            start = step.text_end
            text, words = " ".join(words[:n]), words[n:]
            kept = [c for c in step.calls if c.done and c.outcome is not Outcome.CANCELLED]
            if kept:
                out.append(ChatMessage("assistant", text, tool_calls=_requests(kept)))
                out += [_result(c) for c in kept]
            elif text:
                out.append(ChatMessage("assistant", text))
        if words:
            out.append(ChatMessage("assistant", " ".join(words)))
        return out

    def add_late_result(self, call: ToolCall) -> None:
        """A call that finished after its turn closed: its result joins history now."""
        self.history += [ChatMessage("assistant", "", tool_calls=_requests([call])), _result(call)]
        self.unanswered = True

    def close_turn(self, turn: Turn) -> str:
        """Record the agent's reply as heard; returns that text."""
        said = turn.spoken_text()
        turn.closed = True
        self.history += self.reply_messages(turn, said)
        if self.live is turn:
            self.live = None
        if self.on_turn_closed is not None:
            self.on_turn_closed(turn, said)
        return said


def _requests(calls: list[ToolCall]) -> tuple[ToolCallRequest, ...]:
    return tuple(ToolCallRequest(c.call_id, c.name, c.arguments) for c in calls)


def _result(call: ToolCall) -> ChatMessage:
    return ChatMessage("tool", call.result_for_model(), tool_call_id=call.call_id)
