"""WebRTC calls: server CPU per live call, and how many calls one process carries before its
outbound audio misses the 20 ms pacing. Runs `bench.webrtc_calls` (which puts itself in a
private network namespace, as ICE needs interface addresses) and brings its report into the
table. The aiortc callers share the machine with the server, so capacity is a lower bound.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.context import Context
from bench.registry import Figure, Recorder, Spec, scenario

ROOT = Path(__file__).resolve().parent.parent.parent
SPECS = {
    "cpu_per_call": Spec("server CPU per live call (Opus decode + encode, VAD, pacing)", "% core"),
    "capacity": Spec("concurrent calls with < 1 % late outbound frames", "calls"),
    "steps": Spec("call counts measured (stops at the first failing step)", "count"),
}


@scenario("webrtc", "WebRTC calls (aiortc callers, private network namespace)")
def run(ctx: Context) -> list[Figure]:
    smoke = ctx.config.smoke
    calls, seconds = ("1", "3") if smoke else ("1,8,16,24,32", "10")
    rec = Recorder("webrtc", SPECS)
    for rep in range(ctx.config.repeat if not smoke else 1):
        ctx.log(f"webrtc calls: run {rep + 1}")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "report.json"
            cmd = [sys.executable, "-m", "bench.webrtc_calls", "--calls", calls,
                   "--seconds", seconds, "--max-seconds", "600", "--json", str(out)]  # fmt: skip
            subprocess.run(cmd, cwd=ROOT, check=True, timeout=900, stdout=subprocess.DEVNULL)
            report = json.loads(out.read_text())
        steps = report["steps"]
        at_capacity = [s for s in steps if s["calls"] == report["capacity_calls"]]
        rec.add("cpu_per_call", (at_capacity or steps)[-1]["cpu_per_call_pct"])
        rec.add("capacity", report["capacity_calls"])
        rec.add("steps", len(steps))
    return rec.figures()
