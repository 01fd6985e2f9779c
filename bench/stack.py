"""The system under test, started as `make run` starts it: `python -m server` with env vars,
its OpenAI base URL pointing at a FakeOpenAI in a process of its own (`python -m testing.fakes`).

The server keeps sessions in an embedded Postgres under DATA_DIR; the benchmark gives it a
data directory of its own (not the developer's `var/`), and makes sure the Postgres server,
which outlives a killed parent, is stopped whenever the voice server is.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.context import BenchConfig, Context
from bench.procs import Child, child, free_port, wait_healthy
from server.persistence.database import postmaster_pid, stop_postmaster


@dataclass(frozen=True)
class FakeSettings:
    stt_latency_s: float = 0.0
    chat_latency_s: float = 0.0
    tts_latency_s: float = 0.0
    tts_ms_per_char: float = 20.0

    @classmethod
    def of(cls, cfg: BenchConfig, tts_ms_per_char: float | None = None) -> FakeSettings:
        return cls(
            cfg.stt_latency_s,
            cfg.chat_latency_s,
            cfg.tts_latency_s,
            cfg.tts_ms_per_char if tts_ms_per_char is None else tts_ms_per_char,
        )

    @property
    def total_s(self) -> float:
        return self.stt_latency_s + self.chat_latency_s + self.tts_latency_s

    def args(self) -> list[str]:
        return [
            f"--stt-latency={self.stt_latency_s}",
            f"--chat-latency={self.chat_latency_s}",
            f"--tts-latency={self.tts_latency_s}",
            f"--tts-ms-per-char={self.tts_ms_per_char}",
        ]


@dataclass
class Stack:
    server: Child  # the first (or only) server process
    fake: Child
    port: int
    data_dir: Path
    servers: list[Child] = field(default_factory=list)  # every server process (workers)
    ports: list[int] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports or [self.port]]

    def postgres_pid(self) -> int | None:
        """The embedded Postgres server's postmaster, if it is running."""
        return postmaster_pid(self.data_dir / "postgres")


@contextlib.contextmanager
def voice_stack(
    ctx: Context,
    fake: FakeSettings,
    workers: int = 1,
    *,
    real_workers: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """FakeOpenAI + voice server; both stopped on exit (server first: it holds the streams).

    `workers` > 1 runs one server with WORKERS=N, as `make run` does: a parent and N worker
    processes sharing the port (SO_REUSEPORT; the kernel spreads the connections), whose pids
    are `servers` (the parent, which only supervises, is left out of the CPU sums). With
    `real_workers=False` it is N separate servers on N ports instead, the streams split
    between them by the load generators (how the first WORKERS=2 figures were made). `env`:
    server settings on top of the benchmark's own (e.g. STT_EAGER)."""
    with contextlib.ExitStack() as stack:  # unwinds last-in first: servers, then the fake
        fake_proc = stack.enter_context(child("fake-openai", "testing.fakes", fake.args()))
        fake_port = int(fake_proc.read_prefixed("PORT", timeout=30.0))
        if workers > 1 and real_workers:
            stack.callback(stop_postgres, ctx.data_dir)
            parent, port = stack.enter_context(
                _server(ctx, fake_port, ctx.data_dir, 0, workers, env)
            )
            pids = _worker_pids(parent.pid, workers)
            yield Stack(
                parent, fake_proc, port, ctx.data_dir,
                servers=[_Pid(p) for p in pids], ports=[port],  # type: ignore[misc]
            )  # fmt: skip
            return
        started = []
        for i in range(workers):
            data_dir = ctx.data_dir if i == 0 else ctx.data_dir / f"worker{i}"
            stack.callback(stop_postgres, data_dir)
            started.append(stack.enter_context(_server(ctx, fake_port, data_dir, i, 1, env)))
        (first, port), *_ = started
        yield Stack(
            first, fake_proc, port, ctx.data_dir,
            servers=[s for s, _ in started], ports=[p for _, p in started],
        )  # fmt: skip


@dataclass(frozen=True)
class _Pid:
    """A process the harness did not start itself (a worker of the server's parent)."""

    pid: int


def _worker_pids(parent: int, n: int, timeout: float = 60.0) -> list[int]:
    """The `python -m server` children of `parent`, once there are `n` of them."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    for pid in f.read().split():
                        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as c:
                            if c.read().split(b"\0")[1:3] == [b"-m", b"server"]:
                                found.append(int(pid))
        if len(found) >= n:
            return found[:n]
        if time.monotonic() > deadline:
            raise RuntimeError(f"server parent {parent}: {len(found)} of {n} workers running")
        time.sleep(0.2)


@contextlib.contextmanager
def _server(
    ctx: Context,
    fake_port: int,
    data_dir: Path,
    i: int,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[Child, int]]:
    """One `python -m server` (`i`: which of several) calling the fake; its port with it."""
    cfg = ctx.config
    port = free_port()
    env = {
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "HTTP_HOST": "127.0.0.1",  # the REST/WebSocket API: any free port, loopback only
        "HTTP_PORT": "0",
        "OPENAI_API_KEY": "bench-key",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        # Explicit, so a developer's .env cannot swap in local models or a real database.
        "STT_PROVIDER": "openai",
        "CHAT_PROVIDER": "openai",
        "TTS_PROVIDER": "openai",
        "DATABASE_URL": "",
        "DATA_DIR": str(data_dir),
        "VAD_START_MS": str(cfg.vad_start_ms),
        "VAD_STOP_MS": str(cfg.vad_stop_ms),
        "OUTPUT_LEAD_MS": str(cfg.output_lead_ms),
        "MAX_SESSIONS": "10000",
        "SHUTDOWN_GRACE_S": "1",
        "WORKERS": str(workers),  # explicit: WORKERS defaults to the number of cores
        **(extra_env or {}),
    }
    module, args = "server", []
    if cfg.profile_dir is not None:  # the event-loop thread's profile, written at exit
        cfg.profile_dir.mkdir(parents=True, exist_ok=True)
        prof = cfg.profile_dir / f"server-{time.strftime('%H%M%S')}-{port}.prof"
        module, args = "cProfile", ["-o", str(prof), "-m", "server"]
    try:
        with child(f"server{i or ''}", module, args, env, 20.0, read_stdout=False) as server:
            wait_healthy(server, port, timeout=60.0)
            yield server, port
    finally:
        stop_postgres(data_dir)


@contextlib.contextmanager
def scratch_postgres_dir(name: str) -> Iterator[Path]:
    """A temporary DATA_DIR for a scenario's own embedded Postgres: the postmaster is stopped
    and the directory removed on exit, also when the scenario's loop died before closing it."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"voiceagent-bench-{name}-"))
    try:
        yield data_dir
    finally:
        stop_postmaster(data_dir / "postgres")
        shutil.rmtree(data_dir, ignore_errors=True)


def stop_postgres(data_dir: Path) -> None:
    """Stop the embedded Postgres of `data_dir` if it is still running: the voice server
    normally stops it, but not when it was killed."""
    stop_postmaster(data_dir / "postgres")
