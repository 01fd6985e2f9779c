"""One Realtime response: the events of its lifecycle around (part of) one pipeline turn.

A pipeline turn (an agent reply) is a Realtime response whose output is an assistant message
(audio with its transcript, or text) and, when the model calls client tools, function_call
items; the response ends there and the reply goes on in the response the client creates after
sending the calls' outputs. This module builds the GA server events in the order OpenAI sends
them; the caller adds `event_id`s.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from pipeline.turn import Turn
from server.realtime.formats import OutputConverter
from server.realtime.items import Item, new_id


@dataclass
class Response:
    turn_index: int
    modalities: tuple[str, ...]
    converter: OutputConverter
    previous_item_id: str | None = None  # the conversation's last item when it started
    id: str = field(default_factory=lambda: new_id("resp"))
    output: list[Item] = field(default_factory=list)
    message: Item | None = None  # the assistant message being streamed, if any
    audio_offset_ms: float = 0.0  # where this response's audio starts in the turn's audio
    transcript: str = ""
    cancel_reason: str = ""  # "turn_detected" | "client_cancelled" once interrupted
    failed: str = ""  # an error message, if a provider failed
    output_pieces: int = 0
    restore: dict = field(default_factory=dict)  # per-response overrides to undo when done
    turn: Turn | None = None  # the pipeline turn (its audio timeline, for truncation)

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities

    def _ids(self) -> dict:
        assert self.message is not None
        return {"response_id": self.id, "item_id": self.message.id,
                "output_index": self.output.index(self.message), "content_index": 0}  # fmt: skip

    def wire(self, status: str, usage: dict | None = None) -> dict:
        body: dict = {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": None,
            "output": [] if status == "in_progress" else [i.wire() for i in self.output],
            "output_modalities": list(self.modalities),
            "conversation_id": None,
            "max_output_tokens": "inf",
            "metadata": None,
            "usage": usage,
        }
        if status == "cancelled":
            body["status_details"] = {"type": "cancelled", "reason": self.cancel_reason}
        elif status == "failed":
            body["status_details"] = {"type": "failed",
                                      "error": {"type": "server_error", "code": "provider_failed",
                                                "message": self.failed}}  # fmt: skip
        return body

    def started(self) -> list[dict]:
        return [{"type": "response.created", "response": self.wire("in_progress")}]

    def part(self) -> dict:
        """The content part as response.content_part.* events carry it."""
        if self.audio:
            return {"type": "audio", "transcript": self.transcript}
        return {"type": "text", "text": self.transcript}

    def _add(self, item: Item) -> list[dict]:
        previous = self.output[-1].id if self.output else self.previous_item_id
        self.output.append(item)
        index = len(self.output) - 1
        return [
            {"type": "response.output_item.added", "response_id": self.id, "output_index": index,
             "item": item.wire()},
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item.wire()},
        ]  # fmt: skip

    def open_message(self) -> list[dict]:
        """The assistant message starts (its first text or audio)."""
        if self.message is not None:
            return []
        kind = "audio" if self.audio else "text"
        self.message = Item(new_id("item"), "message", "assistant", kind, status="in_progress")
        self.message.audio_offset_ms = self.audio_offset_ms
        return [*self._add(self.message),
                {"type": "response.content_part.added", **self._ids(), "part": self.part()}]  # fmt: skip

    def text_delta(self, text: str) -> list[dict]:
        out = self.open_message()
        self.transcript += text
        self.output_pieces += 1
        kind = (
            "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        )
        return [*out, {"type": kind, **self._ids(), "delta": text}]

    def audio_delta(self, pcm24k: bytes, sent_ms: float) -> list[dict]:
        if not self.audio:
            return []
        out = self.open_message()
        assert self.message is not None
        self.message.audio_ms = sent_ms - self.audio_offset_ms
        data = self.converter.from_pipeline(pcm24k)
        if not data:
            return out
        return [*out, {"type": "response.output_audio.delta", **self._ids(),
                       "delta": base64.b64encode(data).decode("ascii")}]  # fmt: skip

    def close_message(self, status: str = "completed") -> list[dict]:
        item = self.message
        if item is None or item.status != "in_progress":
            return []
        item.status, item.text = status, self.transcript
        out: list[dict] = []
        if self.audio:
            out.append({"type": "response.output_audio.done", **self._ids()})
            out.append({"type": "response.output_audio_transcript.done", **self._ids(),
                        "transcript": self.transcript})  # fmt: skip
        else:
            out.append(
                {"type": "response.output_text.done", **self._ids(), "text": self.transcript}
            )
        return out + self._item_done(item, {"type": "response.content_part.done", **self._ids(),
                                            "part": self.part()})  # fmt: skip

    def _item_done(self, item: Item, *first: dict) -> list[dict]:
        index = self.output.index(item)
        previous = self.output[index - 1].id if index else self.previous_item_id
        return [
            *first,
            {"type": "response.output_item.done", "response_id": self.id, "output_index": index,
             "item": item.wire()},
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item.wire()},
        ]  # fmt: skip

    def function_call(self, call_id: str, name: str, arguments: str) -> list[dict]:
        """A client tool call: a function_call item, its arguments, done."""
        out = self.close_message()
        item = Item(
            new_id("item"), "function_call", status="in_progress", call_id=call_id, name=name
        )
        out += self._add(item)
        ids = {"response_id": self.id, "item_id": item.id, "output_index": self.output.index(item),
               "call_id": call_id}  # fmt: skip
        item.arguments, item.status = arguments, "completed"
        out.append({"type": "response.function_call_arguments.delta", **ids, "delta": arguments})
        out.append({"type": "response.function_call_arguments.done", **ids, "name": name,
                    "arguments": arguments})  # fmt: skip
        return out + self._item_done(item)

    @property
    def calls(self) -> int:
        return sum(1 for i in self.output if i.type == "function_call")

    def finished(self, input_tokens: int) -> list[dict]:
        status = "cancelled" if self.cancel_reason else "failed" if self.failed else "completed"
        out = self.close_message("completed" if status == "completed" else "incomplete")
        usage = {
            "total_tokens": input_tokens + self.output_pieces,
            "input_tokens": input_tokens,
            "output_tokens": self.output_pieces,
            "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0,
                                    "cached_tokens": 0},
            "output_token_details": {"text_tokens": self.output_pieces, "audio_tokens": 0},
        }  # fmt: skip
        out.append({"type": "response.done", "response": self.wire(status, usage)})
        return out
