"""Child processes (server, fake OpenAI, echo server, load generators) and /proc readings.

Every child gets PR_SET_PDEATHSIG, so it dies with the benchmark even if the benchmark is
killed, and is also killed in `finally` (TERM, then KILL). Each child's stderr goes to a log
file whose tail is shown when something fails. Only 127.0.0.1 is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.context import ROOT

CLOCK_TICK = os.sysconf("SC_CLK_TCK")
LOG_DIR = Path(tempfile.gettempdir()) / "voiceagent-bench"


class ChildFailed(RuntimeError):
    pass


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Child:
    """A `python -m <module>` child with pipes to stdin/stdout and stderr in a log file.

    With `read_stdout=False` stdout goes to the log too: a pipe nobody reads would block a
    child (or the Postgres it starts, which inherits it) once 64 KiB were written."""

    def __init__(
        self,
        name: str,
        module: str,
        args: list[str],
        env: dict[str, str],
        read_stdout: bool = True,
        python: str | None = None,
    ) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in kill()
        self.proc = subprocess.Popen(
            [python or sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if read_stdout else self._log,
            stderr=self._log,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def read_line(self, timeout: float) -> str:
        """One stdout line, waiting at most `timeout`; fails with the log tail."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise ChildFailed(f"{self.name}: no output within {timeout:.0f}s\n{self.log_tail()}")
        return line.decode().strip()

    def read_prefixed(self, prefix: str, timeout: float) -> str:
        """The rest of the first stdout line that starts with `prefix`."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.1, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line[len(prefix) :].strip()

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(f"  {self.name}| {t}" for t in text[-lines:])
        return ""

    def kill(self, grace: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5.0)
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        self._log.close()


@contextlib.contextmanager
def child(
    name: str,
    module: str,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    stop_grace: float = 5.0,
    read_stdout: bool = True,
    python: str | None = None,
) -> Iterator[Child]:
    """A child for the duration of the block: TERM at the end, KILL after `stop_grace`;
    `python`: another interpreter (a bench-only venv) instead of this one."""
    proc = Child(name, module, list(args), env or {}, read_stdout, python)
    try:
        yield proc
    finally:
        proc.kill(stop_grace)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: Child, port: int, timeout: float = 30.0) -> None:
    """Poll the gRPC health service until SERVING (the server is ready for streams)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                raise ChildFailed(f"{proc.name} exited early\n{proc.log_tail()}")
            with contextlib.suppress(grpc.RpcError):
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.05)
    raise ChildFailed(f"{proc.name} not healthy within {timeout:.0f}s\n{proc.log_tail()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all threads (/proc/<pid>/stat utime + stime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # fields 14 and 15 of stat


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU per thread id (/proc/<pid>/task/*/stat); the main (event-loop) thread's id is pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread may end between listdir and open
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return out


def family_cpu_seconds(root: int) -> dict[int, float]:
    """CPU of a process and its direct children (e.g. a postmaster and its backends)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(entry) == root or int(fields[1]) == root:  # fields[1]: ppid
                out[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
    return out


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
