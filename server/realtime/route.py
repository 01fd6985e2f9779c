"""WS /v1/realtime: the OpenAI Realtime API (GA events) on the HTTP port.

Connect as with OpenAI (`?model=` is accepted; `Authorization: Bearer` with an API key or a
client token, or a client token as `?token=`). Our extension: `?session_id=<id>` resumes a
stored session (its history becomes items). The session is opened through the core's opener
like on every other edge, so it is listed, limited, persisted and measured alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from fastapi import APIRouter, WebSocket

from pipeline.audio import PIPELINE_RATE, PcmFormat
from server.auth.http import socket_caller
from server.core import Core
from server.realtime import errors
from server.realtime.config import SessionConfig
from server.realtime.connection import Connection
from server.realtime.formats import OUTPUT_RATE
from server.realtime.handlers import HANDLERS
from server.realtime.items import Items, new_id
from server.realtime.turn_detection import IdleTimer, from_params
from server.sessions import ids
from server.sessions.ending import EndReason
from server.sessions.errors import Kind, RequestError
from server.sessions.opener import SessionRequest

log = logging.getLogger(__name__)
router = APIRouter()
CLOSE_CODES = {Kind.UNAVAILABLE: 1013, Kind.EXHAUSTED: 1013, Kind.RATE_LIMITED: 1013}
KEY_PROTOCOL = "openai-insecure-api-key."
MAX_EVENT_CHARS = 16 * 1024 * 1024  # one event (base64 audio of a whole utterance fits)


@router.websocket("/v1/realtime")
async def realtime_socket(
    websocket: WebSocket,
    model: str = "",
    session_id: str = "",
    token: str | None = None,
) -> None:
    core: Core = websocket.app.state.core
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    try:
        # Browsers cannot set headers: like OpenAI's, a page may offer its credential as the
        # subprotocol `openai-insecure-api-key.<client token>` (tokens only, as with ?token=).
        offered_key = next((p.removeprefix(KEY_PROTOCOL) for p in offered
                            if p.startswith(KEY_PROTOCOL)), None)  # fmt: skip
        caller = await socket_caller(websocket, token or offered_key)
        request = SessionRequest(
            edge="realtime",
            caller=caller,
            session_id=ids.strict(session_id) if session_id else "",
            input_format=PcmFormat(PIPELINE_RATE, 1),
            output_format=PcmFormat(OUTPUT_RATE, 1),
        )
        opened = await core.opener.open(request)
        limits = await core.opener.limits(opened.record.tenant_id)
        async with core.opener.running(opened) as session:
            config = SessionConfig(
                instructions=session.conversation.instructions,
                voice=opened.options.voice or "default",
                model=model[:200] or "gpt-realtime",
                turn_detection=from_params(opened.options.vad),
            )
            conn = Connection(
                websocket, session, opened.record, core.opener.store, config,
                Items.from_history(session.conversation),
                server_tools=opened.options.tools.specs,
                limits=[{"name": "requests", "limit": limits.starts_per_minute,
                         "remaining": limits.starts_per_minute, "reset_seconds": 60.0}],
            )  # fmt: skip
            await serve(conn, opened.resumed)
    except RequestError as exc:  # cannot open the session: say why, then close
        with contextlib.suppress(Exception):
            problem = errors.from_request_error(exc)
            await websocket.send_text(json.dumps(errors.event(problem, new_id("event"), None)))
            reason = str(exc).encode()[:120].decode(errors="ignore")
            await websocket.close(CLOSE_CODES.get(exc.kind, 1008), reason)


async def serve(conn: Connection, resumed: bool) -> None:
    timer = IdleTimer(conn)
    if not await conn.send(
        {"type": "session.created", "session": conn.config.wire(conn.record.id)}
    ):
        return
    if resumed:  # our extension: the stored conversation, as items the client can address
        previous = None
        for item in conn.items.order:
            await conn.send({"type": "conversation.item.done", "previous_item_id": previous,
                             "item": item.wire()})  # fmt: skip
            previous = item.id
    reader = asyncio.create_task(read(conn), name=f"realtime-reader:{conn.record.id}")
    try:
        await conn.pump()
        if not conn.gone:
            await _closing(conn)
    finally:
        timer.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


# Why the server ended a session, told in an `error` event before the close frame.
ENDINGS = {
    EndReason.IDLE: ("session_idle", "no input and no agent activity for too long; reconnect "
                     "with ?session_id= to continue"),
    EndReason.MAX_DURATION: ("session_expired", "maximum session duration reached"),
    EndReason.SHUTDOWN: ("server_shutdown", "server restarting; reconnect with ?session_id= "
                         "to continue"),
    EndReason.HANG_UP: ("session_ended", "the session was ended"),
    EndReason.AGENT_HUNG_UP: ("session_ended", "the agent ended the call"),
}  # fmt: skip


async def _closing(conn: Connection) -> None:
    end = EndReason.of(conn.session.end_reason)
    code, message = ENDINGS.get(end, ("session_ended", "session ended"))
    if end in ENDINGS:
        await conn.problem(errors.Problem(message, code, kind=errors.SERVER))
    with contextlib.suppress(Exception):
        await conn.websocket.close(1012 if end == EndReason.SHUTDOWN else 1000, code)


async def read(conn: Connection) -> None:
    try:
        while True:
            frame = await conn.websocket.receive()
            if frame["type"] == "websocket.disconnect":
                break
            conn.session.last_input_at = time.monotonic()
            event_id = None
            try:
                event = parse(frame.get("text"))
                event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
                handler = HANDLERS.get(event["type"])
                if handler is None:
                    raise errors.Problem(f"Invalid value: '{str(event['type'])[:60]}'. Supported "
                                         f"values are: {', '.join(HANDLERS)}.", "invalid_value",
                                         "type")  # fmt: skip
                await handler(conn, event)
            except errors.Problem as problem:
                await conn.problem(problem, event_id)
            except RequestError as exc:
                await conn.problem(errors.from_request_error(exc), event_id)
            except Exception as exc:  # a bug must not end the conversation
                log.exception("Realtime %s: event failed", conn.record.id)
                await conn.problem(errors.Problem(f"internal error ({type(exc).__name__})",
                                                  "internal", kind=errors.SERVER), event_id)  # fmt: skip
    except Exception as exc:  # a broken connection ends like a disconnect
        log.debug("Realtime %s reader ended: %r", conn.record.id, exc)
    conn.gone = True
    await conn.session.close()


def parse(text: str | None) -> dict:
    if text is None:
        raise errors.Problem(
            "binary frames are not accepted: send JSON text events", "invalid_event"
        )
    if len(text) > MAX_EVENT_CHARS:
        raise errors.Problem("event too large", "invalid_event")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        raise errors.Problem("The event is not valid JSON.", "invalid_json") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise errors.Problem("An event must be a JSON object with a string 'type'.",
                             "invalid_event", "type")  # fmt: skip
    return event
