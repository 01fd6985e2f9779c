"""One interface per role, so OpenAI and the offline models are interchangeable.

Providers speak plain Python: PCM bytes in, text out; messages in, text pieces out; text in,
PCM pieces out. They raise `ProviderError` with a message a person can act on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Protocol

from pipeline.tools.lifecycle import ToolCallDelta
from pipeline.tools.spec import ToolSpec


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
class ToolCallRequest:
    """A complete tool call the model asked for (arguments as JSON text)."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str
    _: KW_ONLY
    tool_calls: tuple[ToolCallRequest, ...] = ()  # assistant: the calls it asked for
    tool_call_id: str = ""  # tool: the call this message answers


@dataclass(frozen=True)
class ChatTools:
    """The tools a chat request offers and whether the model must use one."""

    specs: tuple[ToolSpec, ...]
    choice: str = "auto"  # "auto" | "none" | "required" | a tool name


ChatPiece = str | ToolCallDelta  # a streamed reply: text, or part of a tool call


class SpeechToText(Protocol):
    name: str  # e.g. "openai/whisper-1", shown to clients

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance of 16-bit mono PCM."""
        ...


class ChatModel(Protocol):
    name: str

    def stream(
        self, messages: list[ChatMessage], tools: ChatTools | None = None
    ) -> AsyncIterator[ChatPiece]:
        """Stream the assistant's reply: text pieces, and tool-call deltas if `tools` allow."""
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
