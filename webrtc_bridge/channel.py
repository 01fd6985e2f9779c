"""The call's data channel: session events out as JSON, text turns and control in.

Events are the gRPC stream's `ConverseResponse` messages rendered by protobuf's own JSON
mapping (snake_case field names, enum names, every field present), so one schema serves both
APIs: `{"transcript": {"text": "...", "is_final": true, ...}}`. Agent audio is the exception:
it goes on the audio track, not here. Commands from the page are small JSON objects with a
`type`, the same shape as the WebSocket API's (`text_input`, `interrupt`, `tool_result`) plus
`hang_up`; one
that cannot be used gets an `error` event back and the call goes on.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from dataclasses import dataclass

from aiortc import RTCDataChannel
from google.protobuf.json_format import MessageToDict
from voiceagent.v1 import converse_pb2

from server.sessions import checks
from server.sessions.errors import RequestError
from server.sessions.tools import tool_result_fields

log = logging.getLogger(__name__)

COMMANDS = ("text_input", "interrupt", "hang_up", "tool_result")
MAX_PENDING = 256  # events held until the page's channel opens; older ones are dropped
MAX_MESSAGE_CHARS = 4 * checks.MAX_TEXT_CHARS + 256


class CommandError(ValueError):
    """A data-channel message that cannot be used; answered with an error event."""


@dataclass(frozen=True)
class Command:
    type: str
    text: str = ""
    result: tuple[str, str, str] = ("", "", "")  # tool_result: call_id, output, error


def render(event: converse_pb2.ConverseResponse) -> dict:
    return MessageToDict(
        event, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def error_event(message: str) -> converse_pb2.ConverseResponse:
    return converse_pb2.ConverseResponse(
        error=converse_pb2.Error(code=converse_pb2.ERROR_CODE_INVALID_REQUEST, message=message)
    )


def parse(message: str | bytes) -> Command:
    """One message from the page -> a Command, or CommandError saying what is wrong."""
    if not isinstance(message, str):
        raise CommandError("binary messages are not accepted: send JSON text")
    if len(message) > MAX_MESSAGE_CHARS:
        raise CommandError(f"message of {len(message)} characters is over {MAX_MESSAGE_CHARS}")
    try:
        body = json.loads(message)
    except ValueError as exc:
        raise CommandError(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError('a message must be a JSON object with a "type"')
    kind = body.get("type")
    if kind not in COMMANDS:
        raise CommandError(
            f"unknown message type {str(kind)[:40]!r}; expected one of {', '.join(COMMANDS)}"
        )
    if kind == "tool_result":
        try:
            return Command(kind, result=tool_result_fields(body))
        except RequestError as exc:
            raise CommandError(str(exc)) from None
    if kind != "text_input":
        return Command(kind)
    text = body.get("text")
    if not isinstance(text, str):
        raise CommandError('text_input needs "text", a string')
    try:
        return Command(kind, checks.bounded_text(text, "text", checks.MAX_TEXT_CHARS, True))
    except RequestError as exc:
        raise CommandError(str(exc)) from None


class EventChannel:
    """Sends rendered events on the page's data channel, holding them until it opens."""

    def __init__(self) -> None:
        self.channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING)
        self.sent = 0

    def attach(self, channel: RTCDataChannel) -> None:
        if self.channel is None:
            self.channel = channel
            channel.on("open", self._drain)
            if channel.readyState == "open":
                self._drain()

    def send(self, event: converse_pb2.ConverseResponse) -> None:
        self._pending.append(json.dumps(render(event), separators=(",", ":")))
        self._drain()

    def _drain(self) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        while self._pending:
            text = self._pending.popleft()
            try:
                channel.send(text)
            except Exception as exc:  # closed under us: the call is ending anyway
                log.debug("data channel send failed: %r", exc)
                return
            self.sent += 1
