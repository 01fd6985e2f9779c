"""8. Capacity, side by side: live streams held within p99 frame -> VAD event < 20 ms by one
server process, by WORKERS=2 (two workers on one port, see bench.stack), and by the peer (Pipecat,
`--peer` / `make bench-peer`), all driven by the same load generator in the same run.

Every stream sends 20 ms frames at real time and says an utterance every `capacity_cycle_s`
(8 s), so replies overlap the next utterance across streams. For each system N climbs its
list until the first N that misses (p99 >= 20 ms or a failed stream); "held" is the largest N
that passed. Per core = held / server processes (each one is bound to one core by its GIL).
The load generators share the 2 cores: their CPU is reported beside each run.

The floor beside them, in the same run: a raw grpc.aio server that only receives (bench.echo's
Sink, no proto, no pipeline) fed the same real-time frames by as many streams as this
server's smallest N, its CPU per stream. No server built on grpc.aio goes below it.
"""

from __future__ import annotations

import asyncio

from bench import echo
from bench.context import Context
from bench.live import LiveJob, LiveResult, live_run
from bench.procs import child
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.stats import finite, percentile, ratio

GOAL_MS = 20.0


def job(ctx: Context, n: int, system: str, workers: int) -> LiveJob:
    cfg = ctx.config
    cycle = cfg.capacity_cycle_s
    # With the live scenario's cycle the job is the same as its run, which is then reused.
    own_cycle = None if cycle == cfg.cycle_s else cycle
    return LiveJob(
        n, "cycle", cycle, cycle, cycle, cfg.capacity_measure_cycles * cycle, cfg.grace_s,
        cfg.tts_ms_per_char, cycle_s=own_cycle, workers=workers, system=system,
    )  # fmt: skip


SYSTEMS = {  # key -> (label, system, server processes)
    "ours1": ("this server, 1 process", "ours", 1),
    "ours2": ("this server, WORKERS=2 (a parent, 2 workers on one port)", "ours", 2),
    "pipecat": ("Pipecat 1 process (FastAPI WebSocket, Silero, OpenAI services)", "pipecat", 1),
}


def _sink_floor(ctx: Context, n: int) -> float:
    """% of a core per stream for a raw grpc.aio server receiving `n` real-time streams."""
    seconds = ctx.config.capacity_cycle_s * ctx.config.capacity_measure_cycles
    with child("echo-sink", "bench.echo") as proc:
        target = f"127.0.0.1:{proc.read_prefixed('PORT', 30.0)}"
        ctx.log(f"capacity: raw grpc.aio receive floor, {n} streams")
        used = asyncio.run(echo.paced_sink(target, n, seconds, proc.pid))
        return used / seconds * 100.0 / n


def _p99(res: LiveResult) -> float:
    d = res.data
    return percentile(d["vad_start"] + d["vad_stop"], 99)


@scenario("capacity", "Capacity side by side: streams held at p99 frame -> VAD < 20 ms")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    chosen = [k for k in cfg.capacity_systems if k != "pipecat" or cfg.peer]
    specs: dict[str, Spec] = {}
    rec = Recorder("capacity", specs)
    cpu_per_stream: dict[str, float] = {}
    for key in chosen:
        label, system, workers = SYSTEMS[key]
        held = 0
        for n in cfg.capacity_peer_sessions if system == "pipecat" else cfg.capacity_sessions:
            if system == "ours" and n < workers:
                continue
            res = live_run(ctx, job(ctx, n, system, workers), 0)
            d = res.data
            for k, spec in {
                f"{key}.n{n}.vad": Spec(f"{label}, N={n}: frame -> VAD event", "ms", True),
                f"{key}.n{n}.from_send": Spec(
                    f"  N={n}: the same, from the frame's actual send", "ms", True
                ),
                f"{key}.n{n}.lag": Spec(f"  N={n}: load generator lateness per frame", "ms", True),
                f"{key}.n{n}.loadgen": Spec(f"  N={n}: load generators' CPU", "% core"),
                f"{key}.n{n}.server": Spec(f"  N={n}: server CPU, all processes", "% core"),
                f"{key}.n{n}.fail": Spec(f"  N={n}: failed streams", "count"),
                f"{key}.n{n}.cpu_per_stream": Spec(f"  N={n}: server CPU per stream", "% core"),
            }.items():
                specs[k] = rec.specs[k] = spec
                rec.runs[k] = []
            rec.add(f"{key}.n{n}.vad", d["vad_start"] + d["vad_stop"])
            rec.add(f"{key}.n{n}.from_send", d["vad_from_send"])
            rec.add(f"{key}.n{n}.lag", d["lag"])
            rec.add(f"{key}.n{n}.loadgen", res.pct_core(res.loadgen_cpu_s))
            rec.add(f"{key}.n{n}.server", res.pct_core(res.server_cpu_s))
            rec.add(f"{key}.n{n}.fail", d["failed_streams"])
            per_stream = res.pct_core(res.server_cpu_s) / n
            rec.add(f"{key}.n{n}.cpu_per_stream", per_stream)
            cpu_per_stream.setdefault(key, per_stream)  # at the smallest N tried
            ok = finite(p99 := _p99(res)) and p99 < GOAL_MS and d["failed_streams"] == 0
            ctx.log(f"capacity {key} N={n}: p99 {p99:.1f} ms, {'held' if ok else 'missed'}")
            if not ok:
                break
            held = n
        goals = (Goal("value", ">=", 200),) if key == "ours2" else ()
        for k, spec, value in (
            (f"{key}.held", Spec(f"{label}: streams held", "streams", goals=goals), held),
            (f"{key}.per_core", Spec(f"{label}: streams held per core", "streams"), held / workers),
        ):
            specs[k] = rec.specs[k] = spec
            rec.runs[k] = []
            rec.add(k, value)
    if "pipecat" in chosen and "ours1" in chosen:
        ours, peer = (
            rec.runs["ours1.per_core"][0]["value"],
            rec.runs["pipecat.per_core"][0]["value"],
        )
        k = "ratio"
        specs[k] = rec.specs[k] = Spec(
            "streams per core, this server / Pipecat", "x", goals=(Goal("value", ">=", 40),),
            note="0 held by Pipecat shows as inf",
        )  # fmt: skip
        rec.runs[k] = []
        rec.add(k, ours / peer if peer else float("inf"))
    if "ours1" in cpu_per_stream:
        n = cfg.capacity_sessions[0]
        floor = _sink_floor(ctx, n)
        for k, spec, value in (
            ("floor", Spec(f"raw grpc.aio receive floor, N={n}: CPU per stream", "% core"), floor),
            ("over_floor", Spec("server CPU per stream, this server / floor", "x"),
             ratio(cpu_per_stream["ours1"], floor)),
        ):  # fmt: skip
            specs[k] = rec.specs[k] = spec
            rec.runs[k] = []
            rec.add(k, value)
    if "pipecat" in cpu_per_stream and "ours1" in cpu_per_stream:
        k = "cpu_ratio"
        specs[k] = rec.specs[k] = Spec(
            "server CPU per stream, Pipecat / this server (each at its smallest N)", "x"
        )
        rec.runs[k] = []
        rec.add(k, cpu_per_stream["pipecat"] / cpu_per_stream["ours1"])
    return rec.figures()
