"""The WebSocket's JSON messages: client messages parsed, session events rendered.

The original protocol is kept: `audio_chunk` and `text_input` in; `transcription`,
`conversation_response`, `audio_response` (one MP3 per reply) and `error` out. The session's
other events go out as extra types a streaming client can use and an old client ignores.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass

from google.protobuf.json_format import MessageToDict
from voiceagent.v1 import converse_pb2

from pipeline.tools.spec import ToolSpec
from pipeline.turn import State
from server.http import audio_codec
from server.http.requests import OUTPUT_RATE
from server.sessions import checks
from server.sessions.tools import tool_result_fields, tools_fields

PCM_FORMATS = ("pcm16", "pcm", "pcm_s16le", "linear16", "raw")
CLIENT_TYPES = ("audio_chunk", "text_input", "interrupt", "end_of_input", "tools", "tool_result")


class ProtocolError(ValueError):
    """A client message that cannot be used; reported on the socket, which stays open."""


@dataclass(frozen=True)
class AudioChunk:
    data: bytes
    format: str  # "pcm16" for a raw stream (VAD cuts turns); else a whole recorded utterance
    sample_rate: int = 16_000
    channels: int = 1

    @property
    def is_stream(self) -> bool:
        return self.format in PCM_FORMATS


@dataclass(frozen=True)
class TextInput:
    text: str


@dataclass(frozen=True)
class Control:
    action: str  # "interrupt" | "end_of_input"


@dataclass(frozen=True)
class ToolsIn:
    """Declare (replace) the session's tools for its next replies."""

    tools: tuple[ToolSpec, ...]
    tool_sets: tuple[str, ...]
    choice: str


@dataclass(frozen=True)
class ToolResultIn:
    call_id: str
    output: str
    error: str


Message = AudioChunk | TextInput | Control | ToolsIn | ToolResultIn


def parse(text: str | None) -> Message:
    """One client frame (its text; None for a binary frame) -> a message, or ProtocolError."""
    if text is None:
        raise ProtocolError(
            "binary frames are not accepted: send JSON text frames, with audio as base64 in "
            'an "audio_chunk" message\'s "audio_data"'
        )
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from None
    except RecursionError:  # e.g. "[[[[..." 100,000 deep: not a bug in the server
        raise ProtocolError("invalid JSON: nested too deeply") from None
    if not isinstance(message, dict):
        raise ProtocolError('a message must be a JSON object with a "type"')
    kind = message.get("type")
    if kind == "text_input":
        value = message.get("text")
        if not isinstance(value, str):
            raise ProtocolError('text_input needs "text", a string')
        return TextInput(checks.bounded_text(value, "text", checks.MAX_TEXT_CHARS, required=True))
    if kind == "audio_chunk":
        return _audio_chunk(message)
    if kind == "tools":
        return ToolsIn(*tools_fields(message))
    if kind == "tool_result":
        return ToolResultIn(*tool_result_fields(message))
    if kind in CLIENT_TYPES:
        return Control(kind)
    raise ProtocolError(
        f"unknown message type {str(kind)[:40]!r}; expected one of {', '.join(CLIENT_TYPES)}"
    )


def _audio_chunk(message: dict) -> AudioChunk:
    fmt = str(message.get("format") or "wav").lower()
    if fmt not in PCM_FORMATS and fmt not in audio_codec.UPLOAD_FORMATS:
        raise ProtocolError(
            f"unsupported audio format {fmt[:40]!r}; use pcm16 (a raw 16-bit stream) or a "
            f"recording: {', '.join(audio_codec.UPLOAD_FORMATS)}"
        )
    data = message.get("audio_data")
    if not isinstance(data, str) or not data:
        raise ProtocolError('audio_chunk needs "audio_data", base64 audio')
    if data.startswith("data:") and "," in data:  # a data URL, as FileReader makes
        data = data.split(",", 1)[1]
    try:
        audio = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("audio_data is not valid base64") from None
    rate, channels = message.get("sample_rate", 16_000), message.get("channels", 1)
    if fmt in PCM_FORMATS:
        if not isinstance(rate, int) or not 8_000 <= rate <= 96_000:
            raise ProtocolError("sample_rate must be an integer from 8000 to 96000")
        if channels not in (1, 2):
            raise ProtocolError("channels must be 1 or 2")
        if len(audio) % (2 * channels):
            raise ProtocolError("pcm16 audio_data is not a whole number of 16-bit samples")
        if len(audio) > audio_codec.MAX_DURATION_S * rate * 2 * channels:
            raise ProtocolError("one pcm16 chunk may hold at most 60 seconds of audio")
    return AudioChunk(audio, fmt, rate, channels)


def event_error_name(code: int) -> str:
    """An ErrorCode as the protocol's `code` string, e.g. "provider_failed"."""
    try:
        name = converse_pb2.ErrorCode.Name(code)
    except ValueError:
        name = "ERROR_CODE_UNSPECIFIED"
    return name.removeprefix("ERROR_CODE_").lower()


def error(message: str, code: str = "invalid_request") -> dict:
    return {"type": "error", "message": message, "code": code}


class EventRenderer:
    """Session events -> protocol messages. Keeps each reply's audio to send it as one MP3
    (what the original client plays); with `stream_pcm` the audio also goes out as it comes."""

    def __init__(self, stream_pcm: bool) -> None:
        self.stream_pcm = stream_pcm
        self._audio: dict[int, bytearray] = {}
        self.turns = 0

    async def render(self, event: converse_pb2.ConverseResponse) -> list[dict]:
        kind = event.WhichOneof("event")
        body = getattr(event, kind)
        if kind == "transcript":
            return [{"type": "transcription", "text": body.text, "turn_index": body.turn_index,
                     "start_offset_ms": body.start_offset_ms, "end_offset_ms": body.end_offset_ms}]  # fmt: skip
        if kind == "agent_audio":
            self._audio.setdefault(body.turn_index, bytearray()).extend(body.audio)
            if not self.stream_pcm:
                return []
            return [{"type": "audio_delta", "audio_base64": _b64(body.audio), "format": "pcm16",
                     "sample_rate": OUTPUT_RATE, "turn_index": body.turn_index,
                     "offset_ms": body.offset_ms}]  # fmt: skip
        if kind == "turn_completed":
            return await self._completed(body)
        if kind == "error":
            code = event_error_name(body.code)
            return [error(body.message, code)]
        if kind == "state_changed":
            return [{"type": "state", "state": State(body.state).name.lower()}]
        if kind == "agent_text_delta":
            return [{"type": "agent_text_delta", "text": body.text, "turn_index": body.turn_index}]
        if kind == "session_expiring":
            return [{"type": "session_expiring", "seconds_left": body.seconds_left}]
        if kind == "speech_started":
            return [{"type": "speech_started", "offset_ms": body.offset_ms}]
        if kind == "speech_stopped":
            return [{"type": "speech_stopped", "start_offset_ms": body.start_offset_ms,
                     "end_offset_ms": body.end_offset_ms}]  # fmt: skip
        if kind in ("tool_call", "tool_call_done"):
            return [{"type": kind, **MessageToDict(body, preserving_proto_field_name=True,
                     always_print_fields_with_no_presence=True)}]  # fmt: skip
        if kind == "interrupted":
            return [{"type": "interrupted", "turn_index": body.turn_index,
                     "spoken_text": body.spoken_text, "audio_sent_ms": body.audio_sent_ms}]  # fmt: skip
        return []

    async def _completed(self, done: converse_pb2.TurnCompleted) -> list[dict]:
        self.turns += 1
        pcm = bytes(self._audio.pop(done.turn_index, b""))
        out = []
        if done.agent_text:
            latency = {
                f.name: getattr(done.latency, f.name) for f in done.latency.DESCRIPTOR.fields
            }
            out.append({"type": "conversation_response", "text": done.agent_text,
                        "turn_index": done.turn_index, "user_text": done.user_text,
                        "interrupted": done.interrupted, "latency": latency})  # fmt: skip
        if pcm and not done.interrupted:  # a cut reply is not played again
            mp3 = await asyncio.to_thread(audio_codec.encode, pcm, OUTPUT_RATE, "mp3")
            out.append({"type": "audio_response", "audio_base64": _b64(mp3), "format": "mp3",
                        "turn_index": done.turn_index, "duration_ms": done.agent_audio_ms})  # fmt: skip
        return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
