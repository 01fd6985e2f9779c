"""Write-behind: the pipeline hands over records and never waits for the database.

Records queue in memory, in order, and a single task writes them in batches (one transaction
per batch, consecutive same-statement records as one executemany). If the database is down
the records stay queued and the batch is retried with backoff; every statement is idempotent
(keyed inserts with ON CONFLICT DO NOTHING, updates that set absolute values), so a batch
that failed halfway, or succeeded but lost its reply, is safe to write again: exactly once in
effect, in order. The queue is bounded: near the bound it warns, at the bound it refuses new
records and counts them, so an outage cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, deque
from collections.abc import Awaitable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,  # includes "connection does not exist" / closed mid-query
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the database or the connection, not the record. asyncpg's client-side
    DataError (a value the driver cannot encode) is an InterfaceError but never heals."""
    return isinstance(exc, TRANSIENT) and not isinstance(exc, asyncpg.DataError)


@dataclass(frozen=True)
class Write:
    sql: str
    args: tuple


class WriteBehindWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        max_pending: int = 100_000,
        batch_size: int = 500,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.max_pending, self.batch_size, self.max_backoff_s = (
            max_pending,
            batch_size,
            max_backoff_s,
        )
        self.metrics: Counter[str] = Counter()
        self.connected = True
        self._pending: deque[Write] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # set whenever a batch is done
        self._submitted = 0  # records accepted so far
        self._done = 0  # records written (or skipped as refused) so far
        self._warned_full = False
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="db-writer")

    def submit(self, *writes: Write) -> bool:
        """Queue records for writing; never blocks. False if the queue is full (counted)."""
        if len(self._pending) + len(writes) > self.max_pending:
            self.metrics["dropped"] += len(writes)
            log.error(
                "database writer queue is full (%d records): dropping %d record(s); "
                "is the database down?", len(self._pending), len(writes),
            )  # fmt: skip
            return False
        self._pending.extend(writes)
        self._submitted += len(writes)
        if len(self._pending) >= 0.8 * self.max_pending and not self._warned_full:
            self._warned_full = True
            log.warning("database writer queue at %d of %d records", self.pending, self.max_pending)
        self.metrics["submitted"] += len(writes)
        self._wake.set()
        return True

    def flush(self, timeout: float | None = None) -> Awaitable[bool]:
        """Wait until every record submitted before this call is written (records submitted
        later are not waited for); False on timeout. The mark is taken at the call itself,
        not when the returned awaitable first runs."""
        return self._flushed(self._submitted, timeout)

    async def _flushed(self, target: int, timeout: float | None) -> bool:
        async def reached() -> None:
            while self._done < target:
                self._progress.clear()
                await self._progress.wait()

        try:
            await asyncio.wait_for(reached(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self, timeout: float = 10.0) -> None:
        """Flush (bounded by `timeout`), then stop. What could not be written is logged."""
        if not await self.flush(timeout):
            log.error("database writer: %d record(s) not written at shutdown", self.pending)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(itertools.islice(self._pending, self.batch_size))
                try:
                    try:
                        await self._write(batch)
                    except Exception as exc:
                        if is_transient(exc):
                            raise
                        await self._write_each(batch)  # skip the record that is refused
                except TRANSIENT as exc:
                    if self.connected:
                        log.warning("database unavailable (%s); %d record(s) held, retrying",
                                    exc, self.pending)  # fmt: skip
                    self.connected = False
                    self.metrics["retries"] += 1
                    await asyncio.sleep(backoff)  # retry delay, not synchronisation
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                for _ in batch:
                    self._pending.popleft()
                self._done += len(batch)
                self._progress.set()
                self.metrics["written"] += len(batch)
                if not self.connected:
                    log.info("database reachable again; writing held records")
                self.connected, backoff = True, 0.05
                if len(self._pending) < 0.5 * self.max_pending:
                    self._warned_full = False

    async def _write(self, batch: list[Write]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for sql, group in itertools.groupby(batch, key=lambda w: w.sql):
                await conn.executemany(sql, [w.args for w in group])

    async def _write_each(self, batch: list[Write]) -> None:
        for write in batch:
            try:
                await self._write([write])
            except Exception as exc:
                if is_transient(exc):
                    raise
                self.metrics["failed"] += 1
                log.error("database refused a record (%s); skipped: %s", exc, write.sql[:80])
