"""Realtime conversation items, mapped onto the pipeline's Conversation history.

The pipeline keeps history as a list of ChatMessages (what the model sees next time); a
Realtime client sees items with ids it can retrieve, delete and truncate. Each item keeps a
reference to the history message it stands for (none for one that never reached history, e.g.
an empty transcript), so deleting or truncating an item edits exactly that message.
Plain logic: no asyncio.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from pipeline.conversation import Conversation
from pipeline.providers.base import ChatMessage
from pipeline.turn import Turn


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Item:
    id: str
    type: str  # "message" | "function_call" | "function_call_output"
    role: str = ""  # "user" | "assistant" | "system" for messages
    kind: str = "text"  # content: "text" or "audio"
    text: str | None = None  # the text, or an audio item's transcript (None: not yet)
    status: str = "completed"
    message: ChatMessage | None = None  # the history entry this item is, if any
    turn: Turn | None = None  # an assistant item's turn (its audio timeline, for truncation)
    audio_ms: float = 0.0  # audio sent for an assistant item
    audio_offset_ms: float = 0.0  # where its audio starts in its turn's audio
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    truncate_ms: int | None = None  # truncated while its turn was still closing

    def wire(self) -> dict:
        head = {"id": self.id, "object": "realtime.item", "type": self.type, "status": self.status}
        if self.type == "function_call":
            return {**head, "call_id": self.call_id, "name": self.name, "arguments": self.arguments}
        if self.type == "function_call_output":
            return {**head, "call_id": self.call_id, "output": self.output}
        return {**head, "role": self.role, "content": [self.part()]}

    def part(self) -> dict:
        if self.role == "assistant":
            if self.kind == "audio":
                return {"type": "output_audio", "transcript": self.text or ""}
            return {"type": "output_text", "text": self.text or ""}
        if self.kind == "audio":
            return {"type": "input_audio", "transcript": self.text}
        return {"type": "input_text", "text": self.text or ""}


@dataclass
class Items:
    """The conversation as the client sees it, in order."""

    conversation: Conversation
    order: list[Item] = field(default_factory=list)

    @classmethod
    def from_history(cls, conversation: Conversation) -> Items:
        """A resumed session: its stored history as items (new ids; text content), tool
        calls and their results as function_call / function_call_output items."""
        items = cls(conversation)
        for message in conversation.history:
            if message.role == "tool":
                items.order.append(Item(new_id("item"), "function_call_output",
                                        call_id=message.tool_call_id, output=message.content,
                                        message=message))  # fmt: skip
                continue
            if message.role not in ("user", "assistant", "system"):
                continue
            if message.content or not message.tool_calls:
                items.order.append(Item(new_id("item"), "message", message.role,
                                        text=message.content, message=message))  # fmt: skip
            for call in message.tool_calls:
                items.order.append(Item(new_id("item"), "function_call", call_id=call.call_id,
                                        name=call.name, arguments=call.arguments))  # fmt: skip
        return items

    def get(self, item_id: str) -> Item | None:
        return next((i for i in self.order if i.id == item_id), None)

    def previous_id(self, item: Item) -> str | None:
        index = self.order.index(item)
        return self.order[index - 1].id if index > 0 else None

    def add(self, item: Item, previous_item_id: str | None = None) -> None:
        if previous_item_id is None:
            self.order.append(item)
        else:
            anchor = self.get(previous_item_id)
            self.order.insert(self.order.index(anchor) + 1 if anchor else len(self.order), item)

    def remember(self, item: Item, role: str, text: str) -> None:
        """Put `item` into history (where the model will see it) as `role: text`."""
        item.message = ChatMessage(role, text)
        self.conversation.history.append(item.message)

    def adopt(self, item: Item, role: str, text: str) -> None:
        """Link `item` to the newest unlinked history message `role: text` (the pipeline wrote
        it, e.g. a VAD turn's user text or a reply as heard)."""
        linked = {id(i.message) for i in self.order if i.message is not None}
        for message in reversed(self.conversation.history):
            if message.role == role and message.content == text and id(message) not in linked:
                item.message = message
                return

    def delete(self, item: Item) -> None:
        self.order.remove(item)
        self._replace(item, None)

    def truncate(self, item: Item, audio_end_ms: int) -> str:
        """An assistant audio item cut to what was played: its transcript (and history) keep
        the words whose audio ended before `audio_end_ms`."""
        turn = item.turn
        if turn is None:
            text = item.text or ""
        else:
            played = Turn(turn.index, turn.user_text, turn.speech_end_at,
                          agent_text=turn.agent_text, sentences=turn.sentences,
                          audio_sent_ms=item.audio_offset_ms + audio_end_ms,
                          interrupted=True)  # fmt: skip
            text = played.spoken_text()[len(_said_before(turn, item.audio_offset_ms)) :].strip()
        item.text = text
        item.audio_ms = min(item.audio_ms, float(audio_end_ms))
        self._replace(item, ChatMessage("assistant", text) if text else None)
        return text

    def _replace(self, item: Item, message: ChatMessage | None) -> None:
        history = self.conversation.history
        index = next((n for n, m in enumerate(history) if m is item.message), None)
        if index is not None:
            if message is None:
                del history[index]
            else:
                history[index] = message
        item.message = message if index is not None else None


def _said_before(turn: Turn, offset_ms: float) -> str:
    """The words of `turn` whose audio ended before `offset_ms` (an earlier response's)."""
    if offset_ms <= 0:
        return ""
    earlier = Turn(turn.index, turn.user_text, turn.speech_end_at, agent_text=turn.agent_text,
                   sentences=turn.sentences, audio_sent_ms=offset_ms, interrupted=True)  # fmt: skip
    return earlier.spoken_text()
