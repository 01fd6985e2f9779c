"""Request and response bodies of the REST API (the original API's field names), with examples.

These models are the API's contract as the OpenAPI document shows it at /docs; the session
and WebSocket models are in session_schemas.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

from server.sessions import checks as check

SESSION_ID = "3f0e8c2a-9d1b-4c57-8a6e-2b7f4d9c1e05"


def no_nul(value: str) -> str:
    """NULs and lone UTF-16 surrogates (valid JSON escapes, not text) are refused (422)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"is not valid text: a lone UTF-16 surrogate at character {exc.start}"
        ) from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# The same rules as JSON Schema patterns, so /openapi.json tells clients what is accepted
# (documentation only: the validators above do the checking). "Blank" is what str.strip()
# strips, spelled out: JSON Schema's \s is not quite Python's.
NO_NUL = "^[^\\x00]*$"
_NOT_SPACE = (
    "[^\\x00\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
)
Text = Annotated[str, AfterValidator(no_nul), Field(json_schema_extra={"pattern": NO_NUL})]
Required = Annotated[
    str,
    AfterValidator(no_nul),
    AfterValidator(_not_blank),
    Field(json_schema_extra={"pattern": f"^[^\\x00]*{_NOT_SPACE}[^\\x00]*$"}),
]


class ErrorOut(BaseModel):
    detail: str | list = Field(
        description="What was wrong: a sentence, or FastAPI's list of field errors (422).",
        examples=["session 3f0e8c2a-9d1b-4c57-8a6e-2b7f4d9c1e05 not found"],
    )


class GrpcInfo(BaseModel):
    address: str = Field(examples=["localhost:50051"])
    services: list[str] = Field(examples=[["voiceagent.v1.VoiceAgentService"]])


class ApiInfo(BaseModel):
    name: str = Field(examples=["Voice Agent API"])
    version: str = Field(examples=["0.1.0"])
    description: str
    docs: str = Field(examples=["/docs"])
    redoc: str = Field(examples=["/redoc"])
    openapi: str = Field(examples=["/openapi.json"])
    websocket: str = Field(examples=["/ws/voice-agent/{session_id}"])
    grpc: GrpcInfo


class PartHealth(BaseModel):
    status: Literal["ok", "down", "not_configured"] = Field(examples=["ok"])
    name: str = Field("", description="Provider name, e.g. openai/whisper-1.")
    detail: str = ""


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"] = Field(examples=["ok"])
    reason: str = Field("", description="Why the status is not ok.")
    version: str = Field(examples=["0.1.0"])
    uptime_s: float = Field(examples=[42.5])
    database: PartHealth
    pending_writes: int = Field(description="Records waiting for the database (write-behind).")
    writer: dict[str, int] = Field(
        default_factory=dict,
        description="Write-behind counters: submitted, written, retries, dropped (queue full), "
        "failed (refused by the database), and the queue bound max_pending.",
        examples=[{"submitted": 120, "written": 120, "retries": 0, "max_pending": 100000}],
    )
    providers: dict[str, PartHealth] = Field(
        examples=[{"stt": {"status": "ok", "name": "openai/whisper-1", "detail": ""}}]
    )
    live_sessions: int = Field(description="REST turns, WebSockets and gRPC streams now live.")
    websocket_connections: int


class TranscriptionOut(BaseModel):
    text: str = Field(examples=["I want to order a pizza"])
    duration: float = Field(description="Seconds of audio.", examples=[1.8])
    language: str | None = Field(None, description="Language asked of the STT, if set.")
    format: str = Field(description="Container as detected.", examples=["wav"])


class SpeechIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "Your pizza is on its way.", "format": "mp3"}]}
    )

    text: Required = Field(max_length=check.MAX_TEXT_CHARS)
    voice: Text | None = Field(None, max_length=check.MAX_NAME_CHARS, examples=["alloy"])
    format: Literal["mp3", "wav", "pcm", "opus", "flac"] = Field(
        "mp3",
        description="mp3 (default), wav, opus (Ogg), flac, or pcm: raw 16-bit little-endian "
        "mono at the rate in the X-Sample-Rate header.",
    )


class Latency(BaseModel):
    vad_stop_to_transcript_ms: int = -1
    llm_first_token_ms: int = -1
    tts_first_byte_ms: int = -1
    end_of_speech_to_first_audio_ms: int = -1


class StoredToolCall(BaseModel):
    call_id: str
    name: str
    arguments: str = Field(description="The arguments the model gave, as JSON text.")
    outcome: Literal["completed", "failed", "timed_out", "cancelled"]
    output: str = Field("", description="completed: the result given to the model.")
    error: str = Field("", description="failed / timed_out: what went wrong.")
    reason: str = Field("", description="cancelled: why (for example 'barge-in').")
    duration_ms: int = Field(description="Running time; -1 if it never ran.")


class TurnOut(BaseModel):
    """One completed turn of a conversation (what /voice-agent/process and
    /conversation/process return)."""

    session_id: str = Field(examples=[SESSION_ID])
    user_input: str = Field(description="The transcript, or the text sent.")
    agent_response: str = Field(description="The agent's reply text.")
    state: str = Field(
        description="The session's state after the turn: 'disconnected' means idle, with no "
        "live stream on it; the next request continues it.",
        examples=["disconnected"],
    )
    turn_index: int = Field(examples=[1])
    latency: Latency
    audio_base64: str | None = Field(
        None, description="The reply as speech: base64 of an MP3 file (null if not asked for)."
    )
    audio_format: str | None = Field(None, examples=["mp3"])
    audio_duration_ms: int = Field(0, description="Length of the reply audio.")
    tool_calls: list[StoredToolCall] = Field(
        default_factory=list, description="The tool calls this reply made, with outcomes."
    )


class VoiceTurnOut(TurnOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": SESSION_ID,
                    "user_input": "I want to order a pizza",
                    "agent_response": "Sure! Which size would you like?",
                    "state": "disconnected",
                    "turn_index": 1,
                    "latency": {"llm_first_token_ms": 310, "tts_first_byte_ms": 180},
                    "audio_base64": "SUQzBAAAAAAAI1RTU0UAAAAPAAADTGF2ZjYx...",
                    "audio_format": "mp3",
                    "audio_duration_ms": 1850,
                    "input_duration": 1.8,
                }
            ]
        }
    )
    input_duration: float = Field(description="Seconds of audio uploaded.")


class StartIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"customer_id": "customer123"}]})

    customer_id: Required = Field(max_length=check.MAX_NAME_CHARS)
    instructions: Text | None = Field(
        None,
        max_length=check.MAX_INSTRUCTIONS_CHARS,
        description="System prompt for this session; default: the server's.",
    )
    voice: Text | None = Field(None, max_length=check.MAX_NAME_CHARS, examples=["alloy"])


class StartOut(BaseModel):
    session_id: str = Field(examples=[SESSION_ID])
    customer_id: str = Field(examples=["customer123"])
    state: str = Field(examples=["started"])
    greeting: str = Field(examples=["Hello! How can I help you today?"])
    created_at: datetime


class ProcessIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"session_id": SESSION_ID, "text": "A large one"}]}
    )

    session_id: Required = Field(max_length=check.MAX_NAME_CHARS)
    text: Required = Field(
        max_length=check.MAX_TEXT_CHARS,
        validation_alias=AliasChoices("text", "user_input"),
        description="What the user says (`user_input` is accepted too).",
    )
    include_audio: bool = Field(False, description="Also return the reply as MP3 (base64).")
    tools: list[dict] = Field(
        default_factory=list,
        max_length=64,
        description="Tools for this turn (docs/tools.md): webhook and built-in tools only, "
        "since nobody is on a live stream to answer a client tool. Server tool sets apply too.",
    )
    tool_sets: list[str] = Field(default_factory=list, max_length=16)
