"""3. Live sessions: N real-time callers at once against `python -m server`.

Each caller streams 20 ms frames at real-time pace and says the utterance once per cycle;
the fake providers answer after fixed small latencies. Frame latency is the arrival of a
speech_started / speech_stopped event minus the scheduled send time of the frame that
completed the VAD's debounce (see bench.streams). Turn latency is the last speech frame's
scheduled time to the first agent audio received. Server CPU and RSS come from /proc.
"""

from __future__ import annotations

from bench.context import Context
from bench.live import LiveResult, cycle_job, live_run
from bench.registry import Figure, Goal, Recorder, Spec, make_figure, scenario
from bench.stats import finite

FRAME_GOAL_MS = 20.0
MiB = 1024 * 1024


def specs(n: int) -> dict[str, Spec]:
    at = f"N={n}:"
    return {
        f"n{n}.vad_latency": Spec(
            f"{at} frame -> VAD event", "ms", True, (Goal("p99", "<=", FRAME_GOAL_MS),)
        ),
        f"n{n}.vad_from_send": Spec(
            f"{at} frame -> VAD event, from the frame's actual send", "ms", True
        ),
        f"n{n}.turn_latency": Spec(f"{at} last speech frame -> first agent audio", "ms", True),
        f"n{n}.send_lag": Spec(f"{at} load generator lateness per frame", "ms", True),
        f"n{n}.server_cpu": Spec(f"{at} server CPU per session", "% core"),
        f"n{n}.server_cpu_total": Spec(f"{at} server CPU, whole process", "% core"),
        f"n{n}.server_cpu_main": Spec(f"{at} server CPU, event-loop thread", "% core"),
        f"n{n}.postgres_cpu": Spec(f"{at} embedded Postgres CPU (session writes)", "% core"),
        f"n{n}.rss": Spec(f"{at} server RSS per session", "MB", goals=(Goal("value", "<=", 2.0),)),
        f"n{n}.loadgen_cpu": Spec(f"{at} load generators' CPU, all processes", "% core"),
        f"n{n}.machine_cpu": Spec(f"{at} machine CPU busy, all cores", "%"),
        f"n{n}.failures": Spec(
            f"{at} failed streams + error events", "count", goals=(Goal("value", "<=", 0),)
        ),
    }


def record(rec: Recorder, n: int, res: LiveResult) -> None:
    d = res.data
    rec.add(f"n{n}.vad_latency", d["vad_start"] + d["vad_stop"])
    rec.add(f"n{n}.vad_from_send", d["vad_from_send"])
    rec.add(f"n{n}.turn_latency", d["v2v"])
    rec.add(f"n{n}.send_lag", d["lag"])
    rec.add(f"n{n}.server_cpu", res.pct_core(res.server_cpu_s) / n)
    rec.add(f"n{n}.server_cpu_total", res.pct_core(res.server_cpu_s))
    rec.add(f"n{n}.server_cpu_main", res.pct_core(res.main_thread_cpu_s))
    rec.add(f"n{n}.postgres_cpu", res.pct_core(res.postgres_cpu_s))
    rec.add(f"n{n}.rss", (res.rss_peak - res.rss_base) / MiB / n)
    rec.add(f"n{n}.loadgen_cpu", res.pct_core(res.loadgen_cpu_s))
    rec.add(f"n{n}.machine_cpu", res.machine_busy * 100)
    rec.add(f"n{n}.failures", d["failed_streams"] + d["error_events"])


@scenario("live", "Live sessions (real-time Converse streams, load generators in own processes)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    all_specs: dict[str, Spec] = {}
    for n in cfg.sessions:
        all_specs.update(specs(n))
    rec = Recorder("live", all_specs)
    for n in cfg.sessions:
        for rep in range(cfg.repeat):
            record(rec, n, live_run(ctx, cycle_job(cfg, n), rep))
    figures = rec.figures()
    passing = [
        n
        for n in cfg.sessions
        if finite(p99 := rec.figure(f"n{n}.vad_latency").p99)
        and p99 < FRAME_GOAL_MS
        and rec.figure(f"n{n}.failures").value == 0
    ]
    best = Spec(
        f"largest N with frame p99 < {FRAME_GOAL_MS:g} ms (and no failures)",
        "sessions",
        goals=(Goal("value", ">=", 200),),
        note=f"of N tried: {', '.join(map(str, cfg.sessions))}; 0 when none passes",
    )
    figures.append(make_figure("live", "max_sessions", best, [{"value": max(passing, default=0)}]))
    return figures
