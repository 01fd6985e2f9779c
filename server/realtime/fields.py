"""What every client-event handler shares: field checks, base64, limits, and transcribing a
committed piece of user audio into its item."""

from __future__ import annotations

import base64
import binascii

from pipeline.audio import PIPELINE_RATE
from pipeline.providers.base import ProviderError
from server.realtime.connection import Connection
from server.realtime.errors import Problem, unknown_field
from server.realtime.items import Item

MAX_BUFFER_S = 60.0  # one committed utterance


def check_fields(event: dict, allowed: set[str]) -> None:
    for key in event:
        if key not in allowed and key not in ("type", "event_id"):
            raise unknown_field(key)


def b64(value: object, param: str) -> bytes:
    if not isinstance(value, str):
        raise Problem(f"{param} must be a base64 string", param=param)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(f"{param} is not valid base64", param=param) from None


async def transcribe(conn: Connection, item: Item, pcm16k: bytes) -> None:
    try:
        text = await conn.session.stt.stt.transcribe(pcm16k, PIPELINE_RATE)
    except ProviderError as exc:
        item.text = ""
        await conn.send(
            {"type": "conversation.item.input_audio_transcription.failed", "item_id": item.id,
             "content_index": 0, "error": {"type": "server_error", "code": exc.code,
                                           "message": str(exc), "param": None}},
            {"type": "conversation.item.done", "previous_item_id": conn.items.previous_id(item),
             "item": item.wire()},
        )  # fmt: skip
        return
    await conn.send(*conn.user_transcript(item, text, from_pipeline=False))
