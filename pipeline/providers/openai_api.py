"""OpenAI (or any OpenAI-compatible server) through the official SDK.

The SDK already retries 408/409/429/5xx and connection errors with exponential backoff and
honours Retry-After, so these classes only translate its exceptions into `ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

import openai
from openai.types.chat import ChatCompletionMessageParam

from pipeline.audio import wav_bytes
from pipeline.providers.base import ChatMessage, ChatPiece, ChatTools, ProviderError
from pipeline.tools.lifecycle import ToolCallDelta

OPENAI_TTS_RATE = 24_000  # response_format="pcm" is 24 kHz 16-bit mono


def _error(role: str, exc: Exception) -> ProviderError:
    if isinstance(exc, openai.APITimeoutError):
        detail = "timed out"
    elif isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        detail = f"HTTP {exc.status_code}: {body.get('message') or exc.message}"
    elif isinstance(exc, openai.APIConnectionError):
        detail = f"connection failed ({exc.__cause__ or exc})"
    else:
        detail = str(exc)
    return ProviderError(f"{role} provider failed: {detail}")


class _Language(TypedDict, total=False):
    language: str  # absent: the API detects the language


def _message(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        calls = [
            {
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in message.tool_calls
        ]
        return {"role": "assistant", "content": message.content or None, "tool_calls": calls}  # type: ignore[typeddict-item]
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.tool_call_id}
    raise ValueError(f"unknown chat message role {message.role!r}")


def _tool_choice(choice: str) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


class OpenAISpeechToText:
    def __init__(self, client: openai.AsyncOpenAI, model: str, language: str | None) -> None:
        self.client, self.model, self.language = client, model, language
        self.name = f"openai/{model}"

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        extra: _Language = {"language": self.language} if self.language else {}
        try:
            result = await self.client.audio.transcriptions.create(
                model=self.model,
                file=("speech.wav", wav_bytes(pcm, sample_rate), "audio/wav"),
                response_format="json",
                **extra,
            )
        except openai.OpenAIError as exc:
            raise _error("speech-to-text", exc) from exc
        return result.text.strip()


class OpenAIChat:
    def __init__(self, client: openai.AsyncOpenAI, model: str, max_tokens: int) -> None:
        self.client, self.model, self.max_tokens = client, model, max_tokens
        self.name = f"openai/{model}"

    async def stream(
        self, messages: list[ChatMessage], tools: ChatTools | None = None
    ) -> AsyncIterator[ChatPiece]:
        offer: dict[str, Any] = {}
        if tools is not None and tools.specs:
            offer["tools"] = [spec.openai_tool() for spec in tools.specs]
            offer["tool_choice"] = _tool_choice(tools.choice)
        try:
            stream = await self.client.chat.completions.create(
                model=self.model,
                messages=[_message(m) for m in messages],
                stream=True,
                max_tokens=self.max_tokens,
                **offer,
            )
            async with stream:
                async for chunk in stream:
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.content:
                        yield delta.content
                    for call in delta.tool_calls or ():
                        function = call.function
                        yield ToolCallDelta(
                            call.index,
                            call.id or "",
                            (function.name or "") if function else "",
                            (function.arguments or "") if function else "",
                        )
        except Exception as exc:  # a cut stream may surface as the HTTP library's own error
            raise _error("chat", exc) from exc


class OpenAITextToSpeech:
    sample_rate = OPENAI_TTS_RATE

    def __init__(self, client: openai.AsyncOpenAI, model: str, voice: str) -> None:
        self.client, self.model, self.default_voice = client, model, voice
        self.name = f"openai/{model}"

    async def stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        carry = b""  # HTTP chunks may split a sample; keep byte pairs whole
        try:
            async with self.client.audio.speech.with_streaming_response.create(
                model=self.model,
                voice=voice or self.default_voice,
                input=text,
                response_format="pcm",
            ) as response:
                async for data in response.iter_bytes():
                    data = carry + data
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        yield data[:cut]
        except Exception as exc:  # a cut stream surfaces as the HTTP library's own error
            raise _error("text-to-speech", exc) from exc
