"""Stand-ins for a role with no provider set up: every call fails with the fix in the message."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pipeline.providers.base import ChatMessage, ProviderNotConfigured


class Unconfigured:
    sample_rate = 24_000
    default_voice = ""

    def __init__(self, role: str, reason: str) -> None:
        self.name = "unconfigured"
        self.role, self.reason = role, reason

    def _fail(self) -> ProviderNotConfigured:
        return ProviderNotConfigured(f"no {self.role} provider: {self.reason}")

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        raise self._fail()

    async def stream(
        self, messages: list[ChatMessage] | str, voice: str | None = None
    ) -> AsyncIterator:
        raise self._fail()
        yield  # pragma: no cover - makes this an async generator
