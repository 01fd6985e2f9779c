"""5. Barge-in: the caller talks over the agent; how fast does the agent's audio stop?

Each caller speaks, and a moment after the reply's first audio arrives speaks again, so every
later turn cuts the one before. Events share one ordered stream, so agent audio received
after speech_started was produced after the VAD's start decision. Goal: none later than
speech_started plus one frame (20 ms).
"""

from __future__ import annotations

from bench.context import Context
from bench.live import barge_job, live_run
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.streams import FRAME_MS

SPECS = {
    "detect": Spec("frame -> speech_started, while the agent talks", "ms", latency=True),
    "last_after_started": Spec(
        "last agent audio of the cut turn - speech_started",
        "ms",
        latency=True,
        goals=(Goal("p99", "<=", FRAME_MS),),
        note="negative: the last chunk arrived before the start event",
    ),
    "last_after_interrupted": Spec("last agent audio of the cut turn - interrupted", "ms", True),
    "late_audio": Spec(
        f"agent audio received > {FRAME_MS} ms after speech_started, all cuts",
        "ms audio",
        goals=(Goal("value", "<=", 0),),
    ),
    "cuts": Spec("barge-ins measured per run", "count"),
}


@scenario("barge", "Barge-in (caller talks over the agent's reply)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("barge", SPECS)
    for rep in range(cfg.repeat):
        res = live_run(ctx, barge_job(cfg), rep)
        cuts = res.data["barge"]
        rec.add("detect", [c["detect_ms"] for c in cuts])
        rec.add("last_after_started", [c["last_after_started_ms"] for c in cuts])
        rec.add("last_after_interrupted", [c["last_after_interrupted_ms"] for c in cuts])
        rec.add("late_audio", sum(c["late_audio_ms"] for c in cuts) if cuts else float("nan"))
        rec.add("cuts", len(cuts))
    return rec.figures()
