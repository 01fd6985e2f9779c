"""Which role this process has: a worker of a parent (`server.workers.parent`) or on its own.

The parent marks each worker with two environment variables: its index (1..N) and the file
descriptor of a socket back to the parent. Over it the worker says when it serves; when the
parent is gone (killed) the worker reads end-of-file and stops itself, so no worker outlives
its parent and keeps the ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path

WORKER_ENV = "VOICEAGENT_WORKER"  # "index/count", e.g. "2/4"
PARENT_FD_ENV = "VOICEAGENT_WORKER_FD"


def worker() -> tuple[int, int] | None:
    """(index, count) when this process is a worker of a parent, else None."""
    value = os.environ.get(WORKER_ENV, "")
    index, _, count = value.partition("/")
    if not (index.isdigit() and count.isdigit()):
        return None
    return int(index), int(count)


def cores(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's
    CPU limit), rounded up; at least 1. The default of WORKERS."""
    available = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError, IndexError):
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            available = min(available, math.ceil(int(quota) / int(period)))
    return max(1, available)


class ParentLink:
    """The worker's end of the socket to its parent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls) -> ParentLink | None:
        fd = os.environ.get(PARENT_FD_ENV, "")
        if worker() is None or not fd.isdigit():
            return None
        return cls(socket.socket(fileno=int(fd)))

    def ready(self, grpc_port: int, http_port: int) -> None:
        """Tell the parent this worker serves (one line: `ready <grpc port> <http port>`)."""
        self.sock.sendall(f"ready {grpc_port} {http_port}\n".encode())

    def watch(self, on_parent_gone: Callable[[], None]) -> None:
        """Call `on_parent_gone` when the parent's end closes (the parent died)."""

        async def wait_eof() -> None:
            self.sock.setblocking(False)
            loop = asyncio.get_running_loop()
            with contextlib.suppress(OSError):
                while await loop.sock_recv(self.sock, 64):
                    pass
            on_parent_gone()

        self._task = asyncio.create_task(wait_eof(), name="parent-link")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sock.close()
