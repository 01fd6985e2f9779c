"""Client `conversation.item.*` events: create (text, audio, function call outputs), retrieve,
delete, truncate. Like every handler, each checks its fields and raises `Problem` for what it
cannot do.
"""

from __future__ import annotations

import asyncio

from server.realtime import config as cfg
from server.realtime import tools
from server.realtime.connection import Connection
from server.realtime.errors import Problem, unknown_field, unsupported_field
from server.realtime.fields import MAX_BUFFER_S, b64, check_fields, transcribe
from server.realtime.formats import whole_to_pipeline
from server.realtime.items import Item, new_id


def _item(conn: Connection, item_id: object) -> Item:
    item = conn.items.get(item_id) if isinstance(item_id, str) else None
    if item is None:
        raise Problem(
            f"Item with item_id '{str(item_id)[:64]}' not found.", "item_not_found", "item_id"
        )
    return item


async def item_create(conn: Connection, event: dict) -> None:
    check_fields(event, {"item", "previous_item_id"})
    previous = event.get("previous_item_id")
    last = conn.items.order[-1].id if conn.items.order else None
    if previous is not None and previous != last:
        raise unsupported_field("previous_item_id", "items are added at the end only")
    body = event.get("item")
    if not isinstance(body, dict):
        raise Problem("item must be an object", param="item")
    for key in body:
        if key not in ("id", "type", "object", "role", "content", "status", "call_id", "output",
                       "name", "arguments"):  # fmt: skip
            raise unknown_field(f"item.{key}")
    item_id = body.get("id") or new_id("item")
    if not isinstance(item_id, str) or len(item_id) > 64 or conn.items.get(item_id):
        raise Problem("item.id must be a new string of at most 64 characters", param="item.id")
    kind = body.get("type", "message")
    if kind in ("function_call_output", "function_call"):
        await tools.item_create(conn, item_id, body, last)
        return
    if kind != "message":
        raise Problem(f"item.type {str(kind)[:40]!r} is not supported", "unsupported_parameter",
                      "item.type")  # fmt: skip
    role = body.get("role")
    if role not in ("user", "assistant", "system"):
        raise Problem("item.role must be user, assistant or system", param="item.role")
    texts, audio = _content(conn, role, body.get("content"))
    item = Item(item_id, "message", role, "audio" if audio is not None else "text")
    if audio is None:
        item.text = " ".join(texts)
    conn.items.add(item)
    await conn.send(
        {"type": "conversation.item.added", "previous_item_id": last, "item": item.wire()}
    )
    if audio is not None:
        fmt = conn.config.input_format
        await transcribe(conn, item, await asyncio.to_thread(whole_to_pipeline, fmt, audio))
        return
    conn.items.remember(item, role, item.text or "")
    if role == "user":
        conn.pending_user.append(item.text or "")
    await conn.send(
        {"type": "conversation.item.done", "previous_item_id": last, "item": item.wire()}
    )


def _content(conn: Connection, role: str, content: object) -> tuple[list[str], bytes | None]:
    if not isinstance(content, list) or not content:
        raise Problem("item.content must be a non-empty array", param="item.content")
    texts: list[str] = []
    audio: bytes | None = None
    text_type = "output_text" if role == "assistant" else "input_text"
    for i, part in enumerate(content):
        p = f"item.content[{i}]"
        if not isinstance(part, dict):
            raise Problem(f"{p} must be an object", param=p)
        kind = part.get("type")
        if kind in (text_type, "text") and isinstance(part.get("text"), str):
            texts.append(cfg._string(part["text"], f"{p}.text", 20_000))
        elif kind == "input_audio" and role == "user":
            audio = b64(part.get("audio"), f"{p}.audio")
            limit = conn.config.input_format.duration_ms(len(audio))
            if limit > MAX_BUFFER_S * 1000:
                raise Problem(f"{p}.audio is longer than {MAX_BUFFER_S:.0f} s", param=f"{p}.audio")
        else:
            raise Problem(f"{p}: a {role} message takes {text_type} parts"
                          + (" or input_audio" if role == "user" else ""),
                          "unsupported_parameter", f"{p}.type")  # fmt: skip
    if audio is not None and texts:
        raise Problem("item.content: mix of audio and text is not supported",
                      "unsupported_parameter", "item.content")  # fmt: skip
    return texts, audio


async def item_retrieve(conn: Connection, event: dict) -> None:
    check_fields(event, {"item_id"})
    item = _item(conn, event.get("item_id"))
    await conn.send({"type": "conversation.item.retrieved", "item": item.wire()})


async def item_delete(conn: Connection, event: dict) -> None:
    check_fields(event, {"item_id"})
    item = _item(conn, event.get("item_id"))
    if conn.owns(item) is not None:
        raise Problem("that item's response is in progress; cancel it first",
                      "item_in_progress", "item_id")  # fmt: skip
    conn.items.delete(item)
    await conn.send({"type": "conversation.item.deleted", "item_id": item.id})


async def item_truncate(conn: Connection, event: dict) -> None:
    check_fields(event, {"item_id", "content_index", "audio_end_ms"})
    item = _item(conn, event.get("item_id"))
    if item.role != "assistant" or item.kind != "audio":
        raise Problem(
            "only an assistant audio message can be truncated", "invalid_value", "item_id"
        )
    if event.get("content_index", 0) != 0:
        raise Problem("content_index must be 0 (one content part per item)", param="content_index")
    end = event.get("audio_end_ms")
    if not isinstance(end, int) or isinstance(end, bool) or end < 0:
        raise Problem("audio_end_ms must be a non-negative integer", param="audio_end_ms")
    if end > item.audio_ms + 1:
        raise Problem(f"audio_end_ms {end} is after the end of the item's audio "
                      f"({item.audio_ms:.0f} ms)", param="audio_end_ms")  # fmt: skip
    if conn.owns(item) is not None or (item.turn is not None and not item.turn.closed):
        item.truncate_ms = end  # applied when its turn closes (the cut is on its way)
        await conn.session.interrupt()
    else:
        conn.items.truncate(item, end)
    await conn.send({"type": "conversation.item.truncated", "item_id": item.id,
                     "content_index": 0, "audio_end_ms": end})  # fmt: skip
