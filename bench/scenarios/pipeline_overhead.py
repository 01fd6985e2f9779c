"""1. Pipeline overhead: what the operator framework adds over bare asyncio.Queue hops."""

from __future__ import annotations

import asyncio

from bench.context import Context
from bench.floors import DEPTH, max_rate, paced_latencies
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.stats import percentile, ratio

GOAL = (Goal("value", "<=", 1.5),)
SPECS = {
    "op_latency": Spec(f"Operator chain ({DEPTH} stages), frame latency", "us", latency=True),
    "queue_latency": Spec(f"asyncio.Queue chain ({DEPTH} hops), frame latency", "us", True),
    "latency_ratio": Spec("Operator / Queue latency (p50)", "x", goals=GOAL),
    "op_rate": Spec("Operator chain, max frames/s (best of 3 bursts)", "frames/s"),
    "queue_rate": Spec("asyncio.Queue chain, max frames/s (best of 3 bursts)", "frames/s"),
    "rate_ratio": Spec("Queue / Operator max frames/s", "x", goals=GOAL),
    "turn_latency": Spec(
        f"TurnOperator chain ({DEPTH} stages), frame latency",
        "us",
        latency=True,
        note="agent-turn stages run each item in its own task; info, no goal",
    ),
    "turn_rate_ratio": Spec("Queue / TurnOperator max frames/s", "x", note="info, no goal"),
}


def best_rates(kinds: tuple[str, ...], frames: int, bursts: int = 3) -> dict[str, float]:
    """Best of a few interleaved bursts per chain: other load on the machine only ever
    slows a burst down, and interleaving spreads it over all chains alike."""
    best = dict.fromkeys(kinds, 0.0)
    for _ in range(bursts):
        for kind in kinds:
            best[kind] = max(best[kind], asyncio.run(max_rate(kind, frames)))
    return best


@scenario("pipeline", "Pipeline overhead (in-process, 640-byte frames)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("pipeline", SPECS)
    for i in range(cfg.repeat):
        ctx.log(f"pipeline overhead: run {i + 1}/{cfg.repeat}")
        lat = asyncio.run(
            paced_latencies(["operator", "turn", "queue"], cfg.paced_frames, cfg.warmup_frames)
        )
        rates = best_rates(("operator", "turn", "queue"), cfg.flood_frames)
        rec.add("op_latency", lat["operator"])
        rec.add("queue_latency", lat["queue"])
        rec.add("turn_latency", lat["turn"])
        rec.add(
            "latency_ratio",
            ratio(percentile(lat["operator"], 50), percentile(lat["queue"], 50)),
        )
        rec.add("op_rate", rates["operator"])
        rec.add("queue_rate", rates["queue"])
        rec.add("rate_ratio", ratio(rates["queue"], rates["operator"]))
        rec.add("turn_rate_ratio", ratio(rates["queue"], rates["turn"]))
    return rec.figures()
