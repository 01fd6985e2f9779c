"""One Realtime response: the events of its lifecycle around one pipeline turn.

A pipeline turn (an agent reply) is a Realtime response with one output item, an assistant
message with one content part (audio with its transcript, or text). This module builds the
GA server events for it, in the order OpenAI sends them; the caller adds `event_id`s.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from server.realtime.formats import OutputConverter
from server.realtime.items import Item, new_id

REASONS = {"turn_detected", "client_cancelled"}


@dataclass
class Response:
    turn_index: int
    item: Item
    modalities: tuple[str, ...]
    converter: OutputConverter
    id: str = field(default_factory=lambda: new_id("resp"))
    transcript: str = ""
    cancel_reason: str = ""  # "turn_detected" | "client_cancelled" once interrupted
    failed: str = ""  # an error message, if a provider failed
    output_pieces: int = 0
    restore: dict = field(default_factory=dict)  # per-response overrides to undo when done

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities

    def _ids(self) -> dict:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0,
                "content_index": 0}  # fmt: skip

    def wire(self, status: str, usage: dict | None = None) -> dict:
        body: dict = {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": None,
            "output": [] if status == "in_progress" else [self.item.wire()],
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

    def part(self) -> dict:
        """The content part as response.content_part.* events carry it."""
        if self.audio:
            return {"type": "audio", "transcript": self.transcript}
        return {"type": "text", "text": self.transcript}

    def started(self, previous_item_id: str | None) -> list[dict]:
        part = self.part()
        return [
            {"type": "response.created", "response": self.wire("in_progress")},
            {"type": "response.output_item.added", "response_id": self.id, "output_index": 0,
             "item": self.item.wire()},
            {"type": "conversation.item.added", "previous_item_id": previous_item_id,
             "item": self.item.wire()},
            {"type": "response.content_part.added", **self._ids(), "part": part},
        ]  # fmt: skip

    def text_delta(self, text: str) -> dict:
        self.transcript += text
        self.output_pieces += 1
        kind = (
            "response.output_audio_transcript.delta" if self.audio else "response.output_text.delta"
        )
        return {"type": kind, **self._ids(), "delta": text}

    def audio_delta(self, pcm24k: bytes, sent_ms: float) -> dict | None:
        if not self.audio:
            return None
        data = self.converter.from_pipeline(pcm24k)
        self.item.audio_ms = sent_ms
        if not data:
            return None
        return {"type": "response.output_audio.delta", **self._ids(),
                "delta": base64.b64encode(data).decode("ascii")}  # fmt: skip

    def finished(self, previous_item_id: str | None, input_tokens: int) -> list[dict]:
        status = "cancelled" if self.cancel_reason else "failed" if self.failed else "completed"
        self.item.status = "completed" if status == "completed" else "incomplete"
        self.item.text = self.transcript
        out: list[dict] = []
        if self.audio:
            out.append({"type": "response.output_audio.done", **self._ids()})
            out.append({"type": "response.output_audio_transcript.done", **self._ids(),
                        "transcript": self.transcript})  # fmt: skip
        else:
            out.append(
                {"type": "response.output_text.done", **self._ids(), "text": self.transcript}
            )
        out += [
            {"type": "response.content_part.done", **self._ids(), "part": self.part()},
            {"type": "response.output_item.done", "response_id": self.id, "output_index": 0,
             "item": self.item.wire()},
            {"type": "conversation.item.done", "previous_item_id": previous_item_id,
             "item": self.item.wire()},
        ]  # fmt: skip
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
