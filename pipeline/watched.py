"""A session's provider requests as the dead-air watchdog sees them, and a way to abort one.

A stalled provider is the commonest dead air, and from inside a stage it looks like nothing
at all: one `await` that never returns. So each of a session's providers is wrapped (per
session, in place on its stage; the shared provider objects are untouched) to record, per
request, whether the stage is awaiting the provider right now and since when: the request was
sent, or the last token or audio bytes arrived. While the stage itself is busy with a piece
(forwarding it downstream, which backpressure may hold up), the request is not "waiting", so
a paced reply is never taken for a stalled one.

`Call.abort` ends the await in progress with `ProviderError(code="dead_air")`, which the stage
handles as any provider failure: an `error` event, and its work for that turn ends. It uses
`asyncio.timeout`'s rescheduling, so a real cancellation (barge-in, hang-up) arriving at the
same moment still wins and propagates.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator
from contextlib import aclosing, contextmanager
from typing import Any, TypeVar

from pipeline.providers.base import ChatMessage, ChatPiece, ChatTools, ProviderError

T = TypeVar("T")
DEAD_AIR = "dead_air"  # ProviderError.code and the error event's code (ERROR_CODE_DEAD_AIR)


class Call:
    """One provider request of one stage: "stt", "chat" or "tts"."""

    def __init__(self, stage: str, seq: int) -> None:
        self.stage, self.seq = stage, seq
        self.started_at = time.monotonic()
        self.waiting_since: float | None = None  # awaiting the provider; None: the stage has it
        self.aborted: str | None = None
        self._scope: asyncio.Timeout | None = None

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await the provider; after `abort` this raises ProviderError(code="dead_air")."""
        if self.aborted is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise ProviderError(self.aborted, code=DEAD_AIR)
        self.waiting_since = time.monotonic()
        try:
            async with asyncio.timeout(None) as self._scope:
                return await awaitable
        except TimeoutError:
            if self.aborted is None:
                raise
            raise ProviderError(self.aborted, code=DEAD_AIR) from None
        finally:
            self._scope = None
            self.waiting_since = None

    async def iterate(self, stream: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """`stream`'s items, each awaited through `wait`."""
        items = aiter(stream)
        try:
            while True:
                try:
                    item = await self.wait(anext(items))
                except StopAsyncIteration:
                    return
                yield item
        finally:
            close = getattr(items, "aclose", None)
            if close is not None:
                await close()  # the provider's own cleanup (an HTTP stream, a worker's stop flag)

    def abort(self, message: str) -> None:
        """End the wait in progress (or the next one) with ProviderError(message, "dead_air")."""
        self.aborted = message
        if self._scope is not None:
            self._scope.reschedule(asyncio.get_running_loop().time())


class ProviderWatch:
    """The provider requests of one session in flight."""

    def __init__(self) -> None:
        self.calls: dict[int, Call] = {}
        self._seq = 0

    @contextmanager
    def call(self, stage: str) -> Iterator[Call]:
        self._seq += 1
        call = Call(stage, self._seq)
        self.calls[call.seq] = call
        try:
            yield call
        finally:
            del self.calls[call.seq]

    def waiting(self) -> list[Call]:
        """Requests whose stage is awaiting its provider right now."""
        return [c for c in self.calls.values() if c.waiting_since is not None]

    def busy(self, stage: str) -> bool:
        return any(c.stage == stage for c in self.calls.values())


class _Watched:
    def __init__(self, inner: Any, watch: ProviderWatch) -> None:
        self._inner, self._watch = inner, watch

    def __getattr__(self, name: str) -> Any:  # name, sample_rate, default_voice, ...
        return getattr(self._inner, name)


class WatchedSpeechToText(_Watched):
    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        with self._watch.call("stt") as call:
            return await call.wait(self._inner.transcribe(pcm, sample_rate))


class WatchedChat(_Watched):
    async def stream(
        self, messages: list[ChatMessage], tools: ChatTools | None = None
    ) -> AsyncIterator[ChatPiece]:
        with self._watch.call("chat") as call:
            async with aclosing(call.iterate(self._inner.stream(messages, tools))) as pieces:
                async for piece in pieces:
                    yield piece


class WatchedTextToSpeech(_Watched):
    async def stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        with self._watch.call("tts") as call:
            async with aclosing(call.iterate(self._inner.stream(text, voice))) as chunks:
                async for pcm in chunks:
                    yield pcm
