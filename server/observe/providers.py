"""Providers that count their failures: voiceagent_provider_errors_total{role, code}.

Why a wrapper: a failed provider call reaches the client as an error event that says neither
which role failed nor (for a bug) why, and pipeline/ must not import Prometheus. Wrapping each
role's provider once, where the server builds them (server/app.py), counts every failure after
the provider's own retries, whichever path called it: a session's stages, the Transcribe and
Synthesize RPCs, the REST speech routes. Errors pass through unchanged, as do the providers'
other attributes (name, sample_rate, default_voice, reason, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from pipeline.providers.base import ProviderError, Providers
from server.observe import metrics

UNEXPECTED = "unexpected"  # not a ProviderError: a bug in a provider


def _count(role: str, exc: BaseException) -> None:
    if isinstance(exc, ProviderError):
        metrics.provider_error(role, exc.code)
    elif isinstance(exc, Exception) and not isinstance(exc, asyncio.CancelledError):
        metrics.provider_error(role, UNEXPECTED)


class _Counted:
    def __init__(self, inner: Any, role: str) -> None:
        self._inner, self._role = inner, role

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"Counted({self._inner!r})"


class CountedSpeechToText(_Counted):
    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        try:
            return await self._inner.transcribe(pcm, sample_rate)
        except Exception as exc:
            _count(self._role, exc)
            raise


class CountedStream(_Counted):
    """A chat model or a text-to-speech voice: `stream(...)` yields pieces."""

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        pieces = self._inner.stream(*args, **kwargs)
        closing = contextlib.aclosing(pieces) if hasattr(pieces, "aclose") else None
        try:
            async with closing or contextlib.nullcontext():
                async for piece in pieces:
                    yield piece
        except Exception as exc:
            _count(self._role, exc)
            raise


def counted(providers: Providers) -> Providers:
    """The same providers, each counting its failures under its role."""
    if isinstance(providers.stt, _Counted):
        return providers
    return dataclasses.replace(
        providers,
        stt=CountedSpeechToText(providers.stt, "stt"),
        chat=CountedStream(providers.chat, "chat"),
        tts=CountedStream(providers.tts, "tts"),
    )
