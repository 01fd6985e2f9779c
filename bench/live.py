"""One live run: the voice stack, N real-time Converse streams from load-generator processes,
and the server's CPU and memory read from /proc over the measured window.

Runs are cached in the context by (job, repeat), so scenarios that need the same run (the
live-sessions table and the voice-to-voice share at 100 sessions) pay for it once. Every
process of a run is killed before the run returns.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field

from bench.context import BenchConfig, Context
from bench.peer.stack import peer_stack
from bench.procs import (
    Child,
    child,
    cpu_seconds,
    family_cpu_seconds,
    machine_jiffies,
    rss_bytes,
    thread_cpu_seconds,
)
from bench.stack import FakeSettings, voice_stack


@dataclass(frozen=True)
class LiveJob:
    """Stream timing, relative to the common start: window = [measure_from, + measure_s)."""

    n: int
    mode: str  # "cycle": an utterance every cycle | "barge": talk over each reply
    stagger_s: float  # stream starts are spread evenly over this
    warmup_s: float  # per stream: its first seconds are not counted
    measure_from: float
    measure_s: float
    grace_s: float
    tts_ms_per_char: float
    cycle_s: float | None = None  # None: the config's cycle_s
    workers: int = 1  # server processes, the streams split between them (bench.stack)
    system: str = "ours"  # "ours" | "pipecat" (the peer, bench.peer)
    env: tuple[tuple[str, str], ...] = ()  # server settings for this run (e.g. STT_EAGER)


def cycle_job(cfg: BenchConfig, n: int) -> LiveJob:
    cycles = max(cfg.measure_cycles, math.ceil(cfg.min_measured_turns / n))
    return LiveJob(
        n, "cycle", cfg.cycle_s, cfg.cycle_s, cfg.cycle_s, cycles * cfg.cycle_s, cfg.grace_s,
        cfg.tts_ms_per_char,
    )  # fmt: skip


def barge_job(cfg: BenchConfig) -> LiveJob:
    return LiveJob(
        cfg.barge_streams, "barge", 1.0, 0.0, 0.0, cfg.barge_measure_s, cfg.grace_s,
        cfg.barge_tts_ms_per_char,
    )  # fmt: skip


@dataclass
class LiveResult:
    n: int
    data: dict  # merged load-generator results (lists of ms samples, counters)
    window_s: float
    server_cpu_s: float
    loadgen_cpu_s: float
    rss_base: int  # server RSS before any stream connected
    rss_peak: int  # highest server RSS sampled in the window
    loadgens: int
    main_thread_cpu_s: float  # the server's event-loop thread (it holds the GIL most)
    postgres_cpu_s: float  # the embedded Postgres the server writes sessions to
    machine_busy: float  # share of all cores busy, whole machine, over the window
    extra: dict = field(default_factory=dict)

    def pct_core(self, cpu_s: float) -> float:
        return cpu_s / self.window_s * 100.0

    def summary(self) -> dict:
        """What the JSON keeps of a run besides its figures: the whole-run readings."""
        d = self.data
        keep = ("turns", "interrupted", "failed_streams", "error_events", "failed", "errors")
        return {
            **self.extra,
            "window_s": round(self.window_s, 2),
            "server_cpu_s": self.server_cpu_s,
            "server_main_thread_cpu_s": self.main_thread_cpu_s,
            "postgres_cpu_s": self.postgres_cpu_s,
            "loadgen_cpu_s": self.loadgen_cpu_s,
            "loadgens": self.loadgens,
            "machine_busy": self.machine_busy,
            "rss_base_mb": self.rss_base / 2**20,
            "rss_peak_mb": self.rss_peak / 2**20,
            **{k: d.get(k) for k in keep},
        }


def summaries(ctx: Context) -> list[dict]:
    """Every live run of this invocation, for the JSON file."""
    return [
        {"repeat": key[2], **res.summary()}
        for key, res in ctx.cache.items()
        if isinstance(key, tuple) and key[0] == "live"
    ]


def live_run(ctx: Context, job: LiveJob, rep: int) -> LiveResult:
    key = ("live", job, rep)
    if key not in ctx.cache:
        ctx.log(f"live run: {job.n} {job.mode} stream(s), repeat {rep + 1}")
        ctx.cache[key] = _run(ctx, job)
        d = ctx.cache[key].data
        if d["failed_streams"] or d["error_events"]:
            ctx.log(f"  {d['failed_streams']} failed stream(s), {d['error_events']} error event(s)")
            for msg in (d["failed"] + d["errors"])[:3]:
                ctx.log(f"  e.g. {msg}")
    return ctx.cache[key]


def _loadgen_job(
    cfg: BenchConfig, job: LiveJob, targets: list[str], first: int, count: int
) -> dict:
    fake = FakeSettings.of(cfg, job.tts_ms_per_char)
    return {
        "first_index": first, "count": count, "total": job.n,
        "mode": job.mode, "text": cfg.utterance, "cycle_s": job.cycle_s or cfg.cycle_s,
        "targets": targets, "transport": "ws" if job.system == "pipecat" else "grpc",
        "stagger_s": job.stagger_s, "warmup_s": job.warmup_s,
        "measure_from": job.measure_from, "measure_to": job.measure_from + job.measure_s,
        "end": job.measure_from + job.measure_s + job.grace_s,
        "vad": {"start_ms": cfg.vad_start_ms, "stop_ms": cfg.vad_stop_ms},
        "provider_s": fake.total_s, "barge_delay_s": cfg.barge_delay_s,
    }  # fmt: skip


def _run(ctx: Context, job: LiveJob) -> LiveResult:
    cfg = ctx.config
    fake = FakeSettings.of(cfg, job.tts_ms_per_char)
    per = cfg.streams_per_loadgen
    system = (
        peer_stack(ctx, fake)
        if job.system == "pipecat"
        else voice_stack(ctx, fake, job.workers, env=dict(job.env))
    )
    with system as stack, contextlib.ExitStack() as procs:
        server = stack.server.pid
        servers = [s.pid for s in stack.servers] or [server]
        rss_base = sum(rss_bytes(p) for p in servers)
        gens: list[Child] = []
        for first in range(0, job.n, per):
            gen = procs.enter_context(child(f"loadgen{first // per}", "bench.loadgen"))
            count = min(per, job.n - first)
            gen.send(json.dumps(_loadgen_job(cfg, job, stack.targets, first, count)))
            gens.append(gen)
        for gen in gens:
            ready = gen.read_line(timeout=120.0)
            if ready != "READY":
                raise RuntimeError(f"{gen.name} said {ready!r}\n{gen.log_tail()}")
        start_at = time.perf_counter() + 0.5
        for gen in gens:
            gen.send(f"GO {start_at!r}")
        pids = [*servers, *(g.pid for g in gens)]
        _sleep_until(start_at + job.measure_from)
        cpu0 = [cpu_seconds(p) for p in pids]
        threads0, machine0 = _threads(servers), machine_jiffies()
        pg = stack.postgres_pid()
        pg0 = family_cpu_seconds(pg) if pg else {}
        t0 = time.perf_counter()
        rss_peak, measure_to = 0, start_at + job.measure_from + job.measure_s
        while time.perf_counter() < measure_to:
            rss_peak = max(rss_peak, sum(rss_bytes(p) for p in servers))
            time.sleep(min(0.2, max(0.0, measure_to - time.perf_counter())))
        cpu1 = [cpu_seconds(p) for p in pids]
        threads1, machine1 = _threads(servers), machine_jiffies()
        pg1 = family_cpu_seconds(pg) if pg else {}
        window = time.perf_counter() - t0
        results = []
        deadline = start_at + job.measure_from + job.measure_s + job.grace_s + 60.0
        for gen in gens:
            line = gen.read_prefixed("RESULT", timeout=max(1.0, deadline - time.perf_counter()))
            results.append(json.loads(line))
    used = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    threads = sorted(
        ((s - threads0.get(tid, 0.0), tid) for tid, s in threads1.items()), reverse=True
    )
    busy, total = (b - a for a, b in zip(machine0, machine1, strict=True))
    return LiveResult(
        n=job.n,
        data=_merge(results),
        window_s=window,
        server_cpu_s=sum(used[: len(servers)]),
        loadgen_cpu_s=sum(used[len(servers) :]),
        rss_base=rss_base,
        rss_peak=rss_peak,
        loadgens=len(gens),
        main_thread_cpu_s=sum(threads1.get(p, 0.0) - threads0.get(p, 0.0) for p in servers),
        postgres_cpu_s=sum(s - pg0.get(p, 0.0) for p, s in pg1.items()) if pg else float("nan"),
        machine_busy=busy / total if total else float("nan"),
        extra={
            "job": asdict(job),
            "server_threads_cpu_s": [round(s, 2) for s, _ in threads[:8]],  # busiest first
        },
    )


def _threads(pids: list[int]) -> dict[int, float]:
    """CPU per thread of every server process (a main thread's id is its process id)."""
    out: dict[int, float] = {}
    for pid in pids:
        out.update(thread_cpu_seconds(pid))
    return out


def _sleep_until(at: float) -> None:
    delay = at - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _merge(results: list[dict]) -> dict:
    merged: dict = {}
    for res in results:
        for k, v in res.items():
            if isinstance(v, list):
                merged.setdefault(k, []).extend(v)
            else:
                merged[k] = merged.get(k, 0) + v
    return merged
