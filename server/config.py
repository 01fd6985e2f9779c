"""Server settings from the environment (and `.env`), validated at start-up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.conversation import DEFAULT_INSTRUCTIONS


class IceServer(BaseModel):
    """One STUN or TURN server for WebRTC calls, as a browser's RTCIceServer."""

    urls: str | list[str]
    username: str | None = None
    credential: str | None = None


class Settings(BaseSettings):
    # A validation error quotes no input: a cross-field check would print every setting's
    # value, OPENAI_API_KEY and DATABASE_URL's password included.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    grpc_host: str | None = Field(
        None,
        description="Address the gRPC server binds; unset = loopback (127.0.0.1) while "
        "authentication is off, every interface ([::]) once it is on.",
    )
    grpc_port: int = Field(50051, ge=0, le=65535)
    http_host: str | None = Field(
        None,
        description='Address the REST/WebSocket API binds ("::" for IPv6 as well); unset = '
        "loopback while authentication is off, 0.0.0.0 once it is on.",
    )
    http_port: int = Field(8000, ge=0, le=65535, description="REST/WebSocket API port; 0 = any.")
    workers: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Server processes sharing the ports (SO_REUSEPORT) under one parent; "
        "unset = the CPUs this process may use (a container's CPU limit), 1 = one process.",
    )
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text",
        description='"text" (for people) or "json": one JSON object per line with time, level, '
        "logger, message, and session_id, turn, edge, tenant for lines logged in a session.",
    )
    tls_cert_file: FilePath | None = Field(
        None, description="PEM certificate chain: gRPC and HTTP serve TLS (with TLS_KEY_FILE)."
    )
    tls_key_file: FilePath | None = Field(
        None, description="PEM private key of TLS_CERT_FILE; set both or neither."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description='JSON, e.g. ["https://app.example.org"]: origins whose pages may call the '
        'HTTP API; "*" = any; empty = no cross-origin access.',
    )
    trace_content: bool = Field(
        False,
        description="Put the user's words and the agent's reply on each turn's trace span "
        "(personal data: off by default). Tracing itself is on by OTEL_TRACES_EXPORTER.",
    )

    # Authentication: on as soon as one API key exists (python -m server.keys create).
    require_auth: bool = Field(
        False, description="Refuse unauthenticated calls even before any API key exists."
    )
    allow_unauthenticated: bool = Field(
        False,
        description="Allow binding a non-loopback address with authentication off (anyone "
        "who can reach the port can use the server). Loudly warned about.",
    )
    auth_token_secret: SecretStr | None = Field(
        None,
        description="HMAC secret that signs client tokens; unset = a random one kept in the "
        "database, shared by every server process on it.",
    )
    tenant_max_sessions: int = Field(
        100,
        ge=1,
        description="Live sessions one tenant may hold at once (per-tenant override "
        "with python -m server.keys limits).",
    )
    tenant_starts_per_minute: int = Field(
        120, ge=1, description="Live sessions one tenant may start per minute."
    )
    max_session_duration_s: float = Field(
        3600.0, gt=0, description="A live session is ended after this long (its turns saved)."
    )
    session_expiry_warning_s: float = Field(
        60.0, ge=0, description="A session_expiring event is sent this long before the cut."
    )

    openai_api_key: SecretStr | None = Field(
        None, description="Masked in repr and errors: read with get_secret_value()."
    )
    openai_base_url: str | None = Field(None, description="Any OpenAI-compatible server.")
    openai_timeout_s: float = Field(30.0, gt=0)
    openai_max_retries: int = Field(2, ge=0, le=10)
    stt_model: str = "whisper-1"
    stt_eager: bool = Field(
        False,
        description="Start transcribing once an utterance's trailing pad is heard, during the "
        "VAD's stop wait: the transcript is ready sooner, at the cost of a wasted call each "
        "time the caller pauses that long and speaks on.",
    )
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
    # The control plane (server/cluster, docs/cluster.md): processes on one database as one.
    cluster_owner_id: str = Field(
        "",
        max_length=100,
        description="This process's id in the lease table; empty = host-pid-random.",
    )
    cluster_lease_s: float = Field(
        5.0,
        gt=0,
        le=300,
        description="A live session's lease lasts this long unless its owner renews it; a "
        "session whose owner died is resumable elsewhere after at most this.",
    )
    cluster_heartbeat_s: float = Field(
        1.0, gt=0, le=60, description="How often a process renews its leases (< CLUSTER_LEASE_S)."
    )
    # Call recordings (server/recordings, docs/recordings.md): stereo WAV files, caller left,
    # agent right, under DATA_DIR/recordings/<tenant>/<session id>/.
    record_sessions: bool = Field(
        False,
        description="Record every live stream; off = only streams that ask (SessionConfig."
        "record, WebSocket ?record=true, WebRTC offer record).",
    )
    recording_sample_rate: Literal[8000, 16000, 24000, 48000] = Field(
        16000, description="Sample rate of recording files (both channels)."
    )
    recording_retention_days: float = Field(
        0.0, ge=0, description="Recordings older than this are deleted; 0 = keep forever."
    )
    recording_hook: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description='"module:function" called (in a worker thread) with the path and metadata '
        "of each finished recording, e.g. to upload it.",
    )
    recording_webhook_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="POSTed the JSON metadata of each finished recording.",
    )

    instructions: str = DEFAULT_INSTRUCTIONS
    vad_threshold: float = Field(0.5, gt=0, lt=1)
    vad_start_ms: int = Field(200, ge=0)
    vad_stop_ms: int = Field(600, ge=64)
    vad_pre_roll_ms: int = Field(300, ge=0)
    vad_silence_dbfs: float | None = Field(
        -60.0,
        ge=-120.0,
        le=0.0,
        description="Quiet windows below this RMS level skip the VAD model once it has "
        "settled on silence; unset (empty) turns this level off (with VAD_NOISE_MARGIN_DB "
        "empty too, every window goes to the model).",
    )
    vad_noise_margin_db: float | None = Field(
        3.0,
        ge=0.0,
        le=20.0,
        description="Windows within this many dB of the line's own noise skip the VAD model "
        "too (it still hears one in 8); unset (empty) turns this off.",
    )
    output_lead_ms: int = Field(
        300, ge=0, le=5000, description="Agent audio sent ahead of playback."
    )
    max_sessions: int = Field(
        1000, ge=1, description="Live streams beyond this get RESOURCE_EXHAUSTED."
    )
    shutdown_grace_s: float = Field(5.0, ge=0)
    session_idle_timeout_s: float = Field(
        300.0,
        ge=0,
        description="A live session with no input and no agent activity this long is closed "
        "(it stays resumable); 0 = never.",
    )
    # Dead air (pipeline/watchdog.py, docs/dead-air.md): silence nobody would otherwise notice.
    dead_air_reply_s: float = Field(
        8.0,
        ge=0,
        description="The agent owes a reply (the user's turn closed) and has sent no audio this "
        "long: dead air (logged, counted, an error event, the stuck work cancelled); 0 = off.",
    )
    dead_air_stage_s: float = Field(
        8.0,
        ge=0,
        description="A stage holding work (speech-to-text transcribing, chat with no token, "
        "text-to-speech with no bytes, a client taking no events) without progress this long: "
        "dead air; 0 = off.",
    )
    tools_file: FilePath | None = Field(
        None,
        description='JSON file of server tool sets: {"tool_sets": {name: [tool, ...]}}; '
        'the set named "default" applies to sessions that name no set (docs/tools.md).',
    )
    tool_webhook_secret: SecretStr | None = Field(
        None, description="HMAC key signing webhook tool calls; webhook tools need it."
    )
    tool_webhook_allowed_urls: list[str] = Field(
        default_factory=list,
        description="URL prefixes a session's own webhook tools may call; tool sets from "
        "TOOLS_FILE may call any URL. Empty: sessions may not declare webhook tools.",
    )
    tool_max_steps: int = Field(4, ge=1, le=16, description="Model requests per reply.")
    tool_filler_after_s: float = Field(
        0.0, ge=0, description="Say TOOL_FILLER_TEXT when tools take longer; 0 = never."
    )
    tool_filler_text: str = Field("One moment.", min_length=1, max_length=200)
    dead_air_recovery_text: str = Field(
        "",
        max_length=500,
        description="Said by the agent, as a turn of its own, after a dead-air stall (e.g. "
        '"Sorry, I lost my train of thought. Could you say that again?"); empty = nothing.',
    )
    # WebRTC calls (webrtc_bridge): ICE servers for deployments behind NAT, and how long a call
    # may take to connect (or stay disconnected) before it is ended.
    webrtc_ice_servers: Annotated[list[IceServer], NoDecode] = Field(
        default_factory=list,
        description='JSON, e.g. [{"urls": "stun:stun.example.org:3478"}, {"urls": '
        '"turn:turn.example.org:3478", "username": "u", "credential": "p"}]; empty = host '
        "candidates only (same network).",
    )
    webrtc_ice_timeout_s: float = Field(
        30.0, ge=1, le=600, description="A call disconnected this long ends."
    )
    webrtc_connect_timeout_s: float = Field(
        10.0,
        ge=1,
        le=600,
        description="An answered offer whose call has not connected this long ends (frees its "
        "session slot).",
    )

    @field_validator("cors_origins", "webrtc_ice_servers", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        """A list from the environment is JSON; empty (`WEBRTC_ICE_SERVERS=` in a compose
        file or a manifest) is the empty list, and bad JSON a validation error naming the
        setting, not a traceback."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc.msg}") from None

    @field_validator("workers", "vad_silence_dbfs", "vad_noise_margin_db", mode="before")
    @classmethod
    def _unset_if_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both, or neither")
        return self

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> Settings:
        if self.cluster_heartbeat_s >= self.cluster_lease_s:
            raise ValueError(
                "CLUSTER_HEARTBEAT_S must be shorter than CLUSTER_LEASE_S, or leases expire "
                "between renewals"
            )
        return self
