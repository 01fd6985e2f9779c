"""N worker processes (`python -m server` marked as workers), kept running.

Each worker slot runs one process at a time. The slot's task starts it, waits for its
`ready` line over the parent link, then for its exit; an exit nobody asked for is logged,
its metrics' live gauges retired, and the worker started again after the `RestartPolicy`
delay. `stop` sends SIGTERM to every worker (each drains: refuses new sessions, lets live
turns finish within SHUTDOWN_GRACE_S, saves every session) and SIGKILLs any still running
after `kill_after_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping

from server.workers.restarts import RestartPolicy
from server.workers.role import PARENT_FD_ENV, WORKER_ENV

log = logging.getLogger(__name__)


class WorkerFailed(RuntimeError):
    """A worker exited before it served, while the server was starting."""


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Worker:
    """One slot: index `index` of `count`, its current process (if any)."""

    def __init__(self, index: int, count: int, env: Mapping[str, str]) -> None:
        self.index, self.count, self.env = index, count, env
        self.proc: asyncio.subprocess.Process | None = None
        self.ports: tuple[int, int] | None = None
        self.started_at = 0.0
        self.policy = RestartPolicy()
        self.restarts = 0
        self._link: asyncio.StreamWriter | None = None  # open while the worker should live

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def spawn(self) -> asyncio.StreamReader:
        """Start the process; the returned reader carries its `ready` line (EOF when it dies)."""
        mine, theirs = socket.socketpair()
        env = {**self.env, WORKER_ENV: f"{self.index}/{self.count}",
               PARENT_FD_ENV: str(theirs.fileno())}  # fmt: skip
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", env=env, pass_fds=(theirs.fileno(),)
            )
        finally:
            theirs.close()
        self.started_at = time.monotonic()
        if self._link is not None:
            self._link.close()
        reader, self._link = await asyncio.open_connection(sock=mine)
        log.info("worker %d/%d started (pid %d)", self.index, self.count, self.proc.pid)
        return reader

    async def wait_ready(self, reader: asyncio.StreamReader) -> bool:
        """True once the worker said `ready`; False if it died first."""
        line = (await reader.readline()).decode().split()
        if len(line) == 3 and line[0] == "ready":
            self.ports = (int(line[1]), int(line[2]))
            log.info("worker %d/%d serving (pid %d)", self.index, self.count, self.pid)
            return True
        return False


class WorkerPool:
    def __init__(
        self,
        count: int,
        env: Mapping[str, str],
        *,
        kill_after_s: float,
        on_exit: Callable[[int], None] = lambda pid: None,
    ) -> None:
        """`on_exit(pid)` is called for every worker process that has exited."""
        self.on_exit = on_exit
        self.workers = [Worker(i, count, env) for i in range(1, count + 1)]
        self.kill_after_s = kill_after_s
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._readers: dict[int, asyncio.StreamReader] = {}
        self._wake = asyncio.Event()  # set by stop: a worker waiting to restart gives up

    async def start(self) -> None:
        """Start every worker and wait until all serve; WorkerFailed (the others stopped) if
        one exits first: its own log says why, e.g. a port or a bad setting."""
        for worker in self.workers:
            self._readers[worker.index] = await worker.spawn()
        results = await asyncio.gather(
            *(w.wait_ready(self._readers.pop(w.index)) for w in self.workers)
        )
        failed = [w for w, ok in zip(self.workers, results, strict=True) if not ok]
        if failed:
            await self.stop()
            worker = failed[0]
            code = worker.proc.returncode if worker.proc else None
            raise WorkerFailed(
                f"worker {worker.index} exited during start-up "
                f"({describe_exit(code) if code is not None else 'no ready signal'})"
            )
        self._tasks = [asyncio.create_task(self._keep(w), name=f"worker-{w.index}")
                       for w in self.workers]  # fmt: skip

    async def _keep(self, worker: Worker) -> None:
        """Restart `worker` whenever it exits on its own, until `stop`."""
        while True:
            assert worker.proc is not None
            code = await worker.proc.wait()
            self.on_exit(worker.proc.pid)
            if self.stopping:
                return
            delay = worker.policy.delay(time.monotonic() - worker.started_at)
            log.warning("worker %d/%d (pid %d) died (%s); starting it again in %.1fs",
                        worker.index, worker.count, worker.proc.pid, describe_exit(code),
                        delay)  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            if self.stopping:
                return
            reader = await worker.spawn()
            worker.restarts += 1
            if self.stopping:  # stop began while it was being started: it drains too
                assert worker.proc is not None
                worker.proc.send_signal(signal.SIGTERM)
                continue
            if not await worker.wait_ready(reader):
                continue  # died while starting: the loop logs it and backs off

    async def stop(self) -> bool:
        """SIGTERM every worker, wait for their drains; True if all exited with code 0."""
        self.stopping = True
        self._wake.set()
        procs = [w.proc for w in self.workers if w.proc and w.proc.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        waits = [asyncio.create_task(p.wait()) for p in procs]
        if waits:
            _, late = await asyncio.wait(waits, timeout=self.kill_after_s)
            for proc in procs:
                if proc.returncode is None:
                    log.warning("worker pid %d still running %.0fs after SIGTERM: killing it",
                                proc.pid, self.kill_after_s)  # fmt: skip
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            if late:
                await asyncio.wait(late)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if not self._tasks:  # stopped during start-up: nobody else saw them exit
            for worker in self.workers:
                if worker.pid is not None:
                    self.on_exit(worker.pid)
        return all(p.returncode == 0 for p in procs)

    def alive(self) -> list[int]:
        return [w.pid for w in self.workers if w.proc and w.proc.returncode is None and w.pid]
