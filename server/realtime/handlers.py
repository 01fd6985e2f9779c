"""Client events applied to a Realtime connection: one function per GA client event type.

Each handler checks its event's fields first (an unknown field is named in an `error` and the
event is not applied) and raises `Problem` for anything it cannot do; the reader turns that
into an `error` event echoing the client's `event_id`, and the socket stays open.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable

from pipeline.audio import PIPELINE_RATE
from pipeline.providers.base import ProviderError
from server.realtime import config as cfg
from server.realtime import tools
from server.realtime.connection import Connection
from server.realtime.errors import Problem, unknown_field, unsupported_field
from server.realtime.formats import InputConverter, whole_to_pipeline
from server.realtime.items import Item, new_id
from server.realtime.turn_detection import apply_turn_detection

MAX_BUFFER_S = 60.0  # one committed utterance
Handler = Callable[[Connection, dict], Awaitable[None]]


def _fields(event: dict, allowed: set[str]) -> None:
    for key in event:
        if key not in allowed and key not in ("type", "event_id"):
            raise unknown_field(key)


def _b64(value: object, param: str) -> bytes:
    if not isinstance(value, str):
        raise Problem(f"{param} must be a base64 string", param=param)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Problem(f"{param} is not valid base64", param=param) from None


def _item(conn: Connection, item_id: object) -> Item:
    item = conn.items.get(item_id) if isinstance(item_id, str) else None
    if item is None:
        raise Problem(
            f"Item with item_id '{str(item_id)[:64]}' not found.", "item_not_found", "item_id"
        )
    return item


async def session_update(conn: Connection, event: dict) -> None:
    _fields(event, {"session"})
    new, ignored = cfg.update(conn.config, event.get("session"))
    old, conn.config = conn.config, new
    session = conn.session
    if new.instructions != old.instructions:
        session.conversation.instructions = new.instructions
        conn.store.instructions_changed(conn.record, new.instructions)
    if new.voice != old.voice:
        session.tts.voice = None if new.voice == "default" else new.voice
    session.chat.speak = new.speaks
    if new.input_format != old.input_format:
        conn.converter = InputConverter(new.input_format)
        conn.input_buffer.clear()
    if new.turn_detection != old.turn_detection:
        apply_turn_detection(conn, new.turn_detection)
    if new.tools != old.tools or new.tool_choice != old.tool_choice:
        tools.configure(conn, new)
    for problem in ignored:
        await conn.problem(problem, event.get("event_id"))
    await conn.send({"type": "session.updated", "session": new.wire(conn.record.id)})


async def append(conn: Connection, event: dict) -> None:
    _fields(event, {"audio"})
    data = _b64(event.get("audio"), "audio")
    fmt = conn.config.input_format
    conn.input_ms += fmt.duration_ms(len(data))
    if conn.config.turn_detection is not None:
        await conn.session.push_audio(conn.converter.to_pipeline(data))
        return
    if fmt.duration_ms(len(conn.input_buffer) + len(data)) > MAX_BUFFER_S * 1000:
        raise Problem(f"the input audio buffer holds at most {MAX_BUFFER_S:.0f} s; commit first",
                      "input_audio_buffer_too_large", "audio")  # fmt: skip
    conn.input_buffer.extend(data)


async def commit(conn: Connection, event: dict) -> None:
    _fields(event, set())
    if conn.config.turn_detection is not None:
        raise Problem("with server_vad the VAD commits the buffer; set turn_detection to null "
                      "to commit by hand", "unsupported_parameter", "turn_detection")  # fmt: skip
    fmt = conn.config.input_format
    if fmt.duration_ms(len(conn.input_buffer)) < 100:
        raise Problem("Error committing input audio buffer: buffer too small. Expected at least "
                      "100ms of audio.", "input_audio_buffer_commit_empty")  # fmt: skip
    raw = bytes(conn.input_buffer)
    conn.input_buffer.clear()
    item = Item(new_id("item"), "message", "user", "audio")
    previous = conn.items.order[-1].id if conn.items.order else None
    conn.items.add(item)
    await conn.send(
        {"type": "input_audio_buffer.committed", "item_id": item.id, "previous_item_id": previous},
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item.wire()},
    )
    await _transcribe(conn, item, await asyncio.to_thread(whole_to_pipeline, fmt, raw))


async def _transcribe(conn: Connection, item: Item, pcm16k: bytes) -> None:
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


async def clear(conn: Connection, event: dict) -> None:
    _fields(event, set())
    conn.input_buffer.clear()
    if conn.config.turn_detection is not None:
        apply_turn_detection(conn, conn.config.turn_detection, reset=True)
    await conn.send({"type": "input_audio_buffer.cleared"})


async def item_create(conn: Connection, event: dict) -> None:
    _fields(event, {"item", "previous_item_id"})
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
        await _transcribe(conn, item, await asyncio.to_thread(whole_to_pipeline, fmt, audio))
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
            audio = _b64(part.get("audio"), f"{p}.audio")
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
    _fields(event, {"item_id"})
    item = _item(conn, event.get("item_id"))
    await conn.send({"type": "conversation.item.retrieved", "item": item.wire()})


async def item_delete(conn: Connection, event: dict) -> None:
    _fields(event, {"item_id"})
    item = _item(conn, event.get("item_id"))
    if conn.owns(item) is not None:
        raise Problem("that item's response is in progress; cancel it first",
                      "item_in_progress", "item_id")  # fmt: skip
    conn.items.delete(item)
    await conn.send({"type": "conversation.item.deleted", "item_id": item.id})


async def item_truncate(conn: Connection, event: dict) -> None:
    _fields(event, {"item_id", "content_index", "audio_end_ms"})
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


RESPONSE_FIELDS = {"instructions", "output_modalities", "audio", "conversation", "metadata",
                   "max_output_tokens", "tools", "tool_choice", "input", "prompt"}  # fmt: skip


async def response_create(conn: Connection, event: dict) -> None:
    _fields(event, {"response"})
    if conn.active is not None:
        raise Problem(f"Conversation already has an active response in progress: "
                      f"{conn.active.id}. Wait until the response is finished before creating "
                      "a new one.", "conversation_already_has_active_response")  # fmt: skip
    params = event.get("response") or {}
    if not isinstance(params, dict):
        raise Problem("response must be an object", param="response")
    overrides: dict = {"restore": {}}
    session = conn.session
    for key, value in params.items():
        p = f"response.{key}"
        if key not in RESPONSE_FIELDS:
            raise unknown_field(p)
        if key == "instructions":
            overrides["restore"]["conversation.instructions"] = session.conversation.instructions
            session.conversation.instructions = cfg._string(value, p, 20_000)
        elif key == "output_modalities":
            overrides["output_modalities"] = cfg.modalities(value, p)
        elif key == "audio":
            _response_audio(conn, value, overrides)
        elif key == "conversation" and value not in (None, "auto"):
            raise unsupported_field(p, "responses always join the default conversation")
        elif key in ("input", "prompt") and value is not None:
            raise unsupported_field(p)
        elif key == "max_output_tokens" and value not in (None, "inf"):
            raise unsupported_field(p, "replies are bounded by the chat provider")
        elif key in ("tools", "tool_choice") and value is not None:
            tools.response_overrides(conn, key, value, overrides)
    speaks = "audio" in overrides.get("output_modalities", conn.config.output_modalities)
    if speaks != session.chat.speak:
        overrides["restore"]["chat.speak"] = session.chat.speak
        session.chat.speak = speaks
    await conn.start_response(overrides)


def _response_audio(conn: Connection, value: object, overrides: dict) -> None:
    if (
        not isinstance(value, dict)
        or set(value) - {"output"}
        or not isinstance(value.get("output", {}), dict)
    ):
        raise Problem("response.audio takes {output: {format, voice}}", param="response.audio")
    for key, item in value.get("output", {}).items():
        p = f"response.audio.output.{key}"
        if key == "format":
            try:
                overrides["output_format"] = cfg.parse_format(item, p)
            except ValueError as exc:
                raise Problem(str(exc), param=p) from None
        elif key == "voice":
            overrides["restore"]["tts.voice"] = conn.session.tts.voice
            conn.session.tts.voice = cfg._string(item, p, 200)
        else:
            raise unknown_field(p)


async def response_cancel(conn: Connection, event: dict) -> None:
    _fields(event, {"response_id"})
    active = conn.active
    wanted = event.get("response_id")
    if active is None or (wanted is not None and wanted != active.id):
        raise Problem("Cancellation failed: no active response found", "response_cancel_not_active")
    active.cancel_reason = "client_cancelled"
    await conn.session.interrupt()


async def unsupported_event(conn: Connection, event: dict) -> None:
    raise Problem(f"{event['type']} is a WebRTC/SIP event; this WebSocket does not buffer output "
                  "audio (cut a reply with response.cancel)", "unsupported_event", "type")  # fmt: skip


HANDLERS: dict[str, Handler] = {
    "session.update": session_update,
    "input_audio_buffer.append": append,
    "input_audio_buffer.commit": commit,
    "input_audio_buffer.clear": clear,
    "conversation.item.create": item_create,
    "conversation.item.retrieve": item_retrieve,
    "conversation.item.delete": item_delete,
    "conversation.item.truncate": item_truncate,
    "response.create": response_create,
    "response.cancel": response_cancel,
    "output_audio_buffer.clear": unsupported_event,
}
