"""Bounded worker pools for local model inference, shared by every session of the process.

Local models run blocking code (CTranslate2, llama.cpp, eSpeak) that must never run on the
event loop. Each model gets one `WorkerPool` with a fixed number of threads: on a 2-core
machine more parallel inference only slows every request down. Requests queue for a worker;
one that has waited `queue_timeout_s` without getting one raises `ProviderBusy`
(RESOURCE_EXHAUSTED for clients) instead of stalling silently.

Pools are plain threads, not tied to an event loop, so one pool serves every loop of the
process (the server has one; tests start many).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.providers.base import ProviderBusy

log = logging.getLogger(__name__)

T = TypeVar("T")


class WorkerPool:
    """`workers` threads for one model; a request waits at most `queue_timeout_s` for one."""

    def __init__(self, name: str, workers: int = 1, queue_timeout_s: float = 10.0) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least one worker, got {workers}")
        self.name = name
        self.workers = workers
        self.queue_timeout_s = queue_timeout_s
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._waiting = 0
        self._busy = 0

    @property
    def waiting(self) -> int:
        """Requests queued for a worker right now."""
        return self._waiting

    @property
    def busy(self) -> int:
        """Workers running a request right now."""
        return self._busy

    async def run(self, fn: Callable[..., T], *args, timeout: float | None = None) -> T:
        """Run `fn(*args)` on a worker; ProviderBusy if none is free within the queue timeout.

        Cancelling the caller drops a request that has not started; one that has started runs
        to its end (pass it a stop flag to end it sooner) and its result is discarded.
        """
        return await (await self.start(fn, *args, timeout=timeout))

    async def start(
        self, fn: Callable[..., T], *args, timeout: float | None = None
    ) -> asyncio.Future[T]:
        """Queue `fn(*args)` and return once a worker has begun it: a future of its result.

        For work that reports progress while it runs (streamed tokens). Raises ProviderBusy if
        no worker took it within `timeout` (default: the pool's queue timeout); cancelling
        the caller before then drops it.
        """
        timeout = self.queue_timeout_s if timeout is None else timeout
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        queued_at = time.monotonic()

        def mark_started() -> None:
            if not started.done():
                started.set_result(None)

        def job() -> T:
            with self._lock:
                self._waiting -= 1
                self._busy += 1
            try:
                loop.call_soon_threadsafe(mark_started)
            except RuntimeError:  # the caller's loop is closed: nobody wants the result
                pass
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._busy -= 1

        with self._lock:
            self._waiting += 1
        future = self._executor.submit(job)
        try:
            await asyncio.wait_for(asyncio.shield(started), timeout)
        except TimeoutError:
            if future.cancel():  # still queued: give up its place
                self._unqueue()
                waited = time.monotonic() - queued_at
                log.warning("%s: no worker free after %.1fs; refusing a request", self.name, waited)
                raise ProviderBusy(
                    f"{self.name} is busy: no worker free within {timeout:g}s "
                    f"({self._busy} running, {self._waiting} waiting); try again shortly"
                ) from None
            # it started just as the timeout fired: carry on
        except asyncio.CancelledError:
            if future.cancel():
                self._unqueue()
            raise
        return asyncio.wrap_future(future)

    def _unqueue(self) -> None:
        with self._lock:
            self._waiting -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
