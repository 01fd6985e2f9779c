"""The parent of `WORKERS` > 1: one embedded Postgres, N workers, one drain.

What it does, in order: empties (or makes) PROMETHEUS_MULTIPROC_DIR, so `/metrics` on any
worker reports every worker; reserves both ports (`ports.reserve`: a busy port fails here,
clearly); starts the embedded Postgres when DATABASE_URL is unset (once, supervised:
restarted if it dies) and applies the migrations, so workers get a ready DATABASE_URL; starts
the workers and waits until every one serves. On SIGTERM/SIGINT it drains every worker (see
`WorkerPool.stop`), then stops Postgres. It loads no model and serves nothing itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg
from prometheus_client import multiprocess

from server.config import Settings
from server.persistence.database import EmbeddedPostgres, describe
from server.persistence.migrate import migrate
from server.persistence.supervisor import PostgresSupervisor
from server.workers.pool import WorkerFailed, WorkerPool
from server.workers.ports import port_of, reserve

log = logging.getLogger("server.workers")
# After SIGTERM a worker drains for SHUTDOWN_GRACE_S, then closes its edges and flushes the
# database writer; this much longer it may take before it is killed.
STOP_MARGIN_S = 15.0


def metrics_dir() -> tuple[Path, bool]:
    """PROMETHEUS_MULTIPROC_DIR emptied of an earlier run's files, or a new temporary one;
    and whether this process made it (then it removes it at the end)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="voiceagent-metrics-")), True


class Parent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedPostgres | None = None
        self.supervisor: PostgresSupervisor | None = None
        self.pool: WorkerPool | None = None

    async def start_database(self) -> str:
        """DATABASE_URL, or the URL of the embedded Postgres started here; migrated."""
        url = self.settings.database_url
        if not url:
            self.embedded = EmbeddedPostgres(self.settings.data_dir)
            url = await asyncio.to_thread(self.embedded.start)
            if self.embedded.owned:
                self.supervisor = PostgresSupervisor(
                    self.embedded, self.settings.db_check_interval_s
                )
                self.supervisor.start()
            log.info("embedded Postgres running with data in %s", self.embedded.pgdata)
        try:
            pool = await asyncpg.create_pool(url, min_size=1, max_size=1, timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise RuntimeError(
                f"cannot connect to the database at {describe(url)}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            await migrate(pool)  # once, before workers race to (they find nothing to apply)
        finally:
            await pool.close()
        return url

    async def stop_database(self) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def run(settings: Settings, workers: int) -> int:
    """Serve with `workers` processes until SIGTERM/SIGINT; the process's exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics_path, made_metrics_dir = metrics_dir()
    parent = Parent(settings)
    code = 0
    try:
        try:
            grpc_hold = reserve(settings.grpc_host or "0.0.0.0", settings.grpc_port, "gRPC")
            http_hold = reserve(settings.http_host or "0.0.0.0", settings.http_port, "HTTP")
            database_url = await parent.start_database()
        except RuntimeError as exc:
            log.error("%s", exc)
            return 2
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "GRPC_PORT": str(port_of(grpc_hold)),
            "HTTP_PORT": str(port_of(http_hold)),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_path),
        }
        parent.pool = pool = WorkerPool(
            workers,
            env,
            kill_after_s=settings.shutdown_grace_s + STOP_MARGIN_S,
            on_exit=lambda pid: multiprocess.mark_process_dead(pid, str(metrics_path)),
        )
        starting = asyncio.create_task(pool.start())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is not None:
            assert isinstance(starting.exception(), WorkerFailed)
            log.error("%s; stopping", starting.exception())
            return 2
        if starting.done():
            log.info("%d workers serving gRPC on port %d and HTTP on port %d (pids %s)",
                     workers, port_of(grpc_hold), port_of(http_hold),
                     " ".join(map(str, pool.alive())))  # fmt: skip
            await stopped
        starting.cancel()
        log.info("shutting down %d workers", workers)
        if not await pool.stop():
            code = 1
            log.warning("a worker did not stop cleanly (its log says why)")
        grpc_hold.close()
        http_hold.close()
        log.info("all workers stopped")
        return code
    finally:
        if parent.pool is not None and not parent.pool.stopping:
            await parent.pool.stop()
        await parent.stop_database()
        if made_metrics_dir:
            shutil.rmtree(metrics_path, ignore_errors=True)
