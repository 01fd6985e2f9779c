"""Server settings from the environment (and `.env`), validated at start-up."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.conversation import DEFAULT_INSTRUCTIONS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    grpc_host: str = Field("[::]", description="Address the gRPC server binds.")
    grpc_port: int = Field(50051, ge=0, le=65535)
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
