"""One interface per role, so OpenAI and the offline models are interchangeable.

Providers speak plain Python: PCM bytes in, text out; messages in, text pieces out; text in,
PCM pieces out. They raise `ProviderError` with a message a person can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Protocol


class ProviderError(Exception):
    """A provider failed (after its own retries). `code` names the kind for clients."""

    def __init__(self, message: str, code: str = "provider_failed") -> None:
        super().__init__(message)
        self.code = code


class ProviderNotConfigured(ProviderError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="provider_not_configured")


class ProviderBusy(ProviderError):
    """No worker free in time: the caller should retry later (RESOURCE_EXHAUSTED / 503)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="resource_exhausted")


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


class SpeechToText(Protocol):
    name: str  # e.g. "openai/whisper-1", shown to clients

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance of 16-bit mono PCM."""
        ...


class ChatModel(Protocol):
    name: str

    def stream(self, messages: list[ChatMessage]) -> AsyncIterator[str]:
        """Stream the assistant's reply as text pieces."""
        ...


class TextToSpeech(Protocol):
    name: str
    sample_rate: int  # of the PCM it yields
    default_voice: str

    def stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        """Stream 16-bit mono PCM at `sample_rate` for one piece of text."""
        ...


@dataclass(frozen=True)
class Providers:
    stt: SpeechToText
    chat: ChatModel
    tts: TextToSpeech
    _: KW_ONLY
    # What to close at shutdown (HTTP clients shared by the roles).
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()

    async def aclose(self) -> None:
        for close in self.closers:
            await close()
