"""Server settings from the environment (and `.env`), validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.conversation import DEFAULT_INSTRUCTIONS


class IceServer(BaseModel):
    """One STUN or TURN server for WebRTC calls, as a browser's RTCIceServer."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    grpc_host: str = Field("[::]", description="Address the gRPC server binds.")
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_host: str = Field(
        "0.0.0.0", description='Address the REST/WebSocket API binds ("::" for IPv6 as well).'
    )
    http_port: int = Field(8000, ge=0, le=65535, description="REST/WebSocket API port; 0 = any.")
    log_level: str = "INFO"

    openai_api_key: str | None = None
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible server.")
    openai_timeout_s: float = Field(30.0, gt=0)
    openai_max_retries: int = Field(2, ge=0, le=10)
    stt_model: str = "whisper-1"
    stt_language: str | None = "en"
    chat_model: str = "gpt-4o-mini"
    chat_max_tokens: int = Field(300, ge=1)
    tts_model: str = "tts-1"
    tts_voice: str = "alloy"

    # Which provider serves each role: "local" (offline models from PyPI packages, on CPU) or
    # "openai" (OPENAI_API_KEY, OPENAI_BASE_URL). Unset: "openai" with a key, else "local".
    stt_provider: Literal["local", "openai"] | None = Field(
        None, description="STT_PROVIDER=local|openai; unset follows OPENAI_API_KEY."
    )
    chat_provider: Literal["local", "openai"] | None = Field(
        None, description="CHAT_PROVIDER=local|openai; unset follows OPENAI_API_KEY."
    )
    tts_provider: Literal["local", "openai"] | None = Field(
        None, description="TTS_PROVIDER=local|openai; unset follows OPENAI_API_KEY."
    )
    local_queue_timeout_s: float = Field(
        10.0, gt=0, description="A local request waiting longer for a worker is refused (busy)."
    )
    local_threads: int = Field(0, ge=0, le=256, description="CPU threads per model; 0 = all cores.")
    local_stt_model_path: str | None = Field(
        None, description="A CTranslate2 Whisper model directory instead of the bundled tiny.en."
    )
    local_chat_model_path: str | None = Field(
        None, description="A GGUF chat model instead of the bundled SmolLM2-135M-Instruct."
    )
    local_chat_max_tokens: int = Field(120, ge=1, le=4096)
    local_chat_context_tokens: int = Field(2048, ge=256, le=32768)
    local_chat_temperature: float = Field(0.2, ge=0, le=2)
    local_chat_max_sentences: int = Field(
        3, ge=0, le=100, description="Stop a local reply after this many sentences; 0 = no limit."
    )
    local_tts_voice: str = Field(
        "en-us", description="eSpeak NG voice, e.g. en-us, en-gb-x-rp, en-us+f3."
    )
    local_tts_rate_wpm: int = Field(175, ge=80, le=450, description="eSpeak speaking rate.")

    database_url: str | None = Field(
        None, description="Postgres URL; unset = embedded Postgres under DATA_DIR."
    )
    data_dir: Path = Field(Path("var"), description="Where the embedded Postgres keeps its data.")
    db_pool_size: int = Field(10, ge=1, le=100)
    db_writer_max_pending: int = Field(100_000, ge=100)
    db_check_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often the database is probed (gRPC health follows it) and an embedded "
        "Postgres checked, and restarted if it died.",
    )

    instructions: str = DEFAULT_INSTRUCTIONS
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    vad_start_ms: int = Field(200, ge=0)
    vad_stop_ms: int = Field(600, ge=64)
    vad_pre_roll_ms: int = Field(300, ge=0)
    output_lead_ms: int = Field(
        300, ge=0, le=5000, description="Agent audio sent ahead of playback."
    )
    max_sessions: int = Field(
        1000, ge=1, description="Live streams beyond this get RESOURCE_EXHAUSTED."
    )
    shutdown_grace_s: float = Field(5.0, ge=0)
    # WebRTC calls (webrtc_bridge): ICE servers for deployments behind NAT, and how long a call
    # may take to connect (or stay disconnected) before it is ended.
    webrtc_ice_servers: list[IceServer] = Field(
        default_factory=list,
        description='JSON, e.g. [{"urls": "stun:stun.example.org:3478"}, {"urls": '
        '"turn:turn.example.org:3478", "username": "u", "credential": "p"}]; empty = host '
        "candidates only (same network).",
    )
    webrtc_ice_timeout_s: float = Field(
        30.0, ge=1, le=600, description="A call not connected (or disconnected) this long ends."
    )
