"""Client events applied to a Realtime connection: one function per GA client event type.

Each handler checks its event's fields first (an unknown field is named in an `error` and the
event is not applied) and raises `Problem` for anything it cannot do; the reader turns that
into an `error` event echoing the client's `event_id`, and the socket stays open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from server.realtime import config as cfg
from server.realtime import tools
from server.realtime.connection import Connection
from server.realtime.errors import Problem, unknown_field, unsupported_field
from server.realtime.fields import MAX_BUFFER_S, b64, check_fields, transcribe
from server.realtime.formats import InputConverter, whole_to_pipeline
from server.realtime.item_events import item_create, item_delete, item_retrieve, item_truncate
from server.realtime.items import Item, new_id
from server.realtime.turn_detection import apply_turn_detection

Handler = Callable[[Connection, dict], Awaitable[None]]


async def session_update(conn: Connection, event: dict) -> None:
    check_fields(event, {"session"})
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
    check_fields(event, {"audio"})
    data = b64(event.get("audio"), "audio")
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
    check_fields(event, set())
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
    await transcribe(conn, item, await asyncio.to_thread(whole_to_pipeline, fmt, raw))


async def clear(conn: Connection, event: dict) -> None:
    check_fields(event, set())
    conn.input_buffer.clear()
    if conn.config.turn_detection is not None:
        apply_turn_detection(conn, conn.config.turn_detection, reset=True)
    await conn.send({"type": "input_audio_buffer.cleared"})


RESPONSE_FIELDS = {"instructions", "output_modalities", "audio", "conversation", "metadata",
                   "max_output_tokens", "tools", "tool_choice", "input", "prompt"}  # fmt: skip


async def response_create(conn: Connection, event: dict) -> None:
    check_fields(event, {"response"})
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
    check_fields(event, {"response_id"})
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
