"""`python -m bench --smoke` yields every figure as a number: the harness works, not how fast."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.registry import SCENARIOS
from bench.scenarios import ORDER

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = [  # smoke runs N=2 for live sessions and voice-to-voice, N=1 and 4 offline
    "pipeline.op_latency", "pipeline.queue_latency", "pipeline.latency_ratio",
    "pipeline.rate_ratio", "transport.echo_rtt", "transport.ratio_wall", "transport.ratio_cpu",
    "transport.noise_cpu", "transport.ratio_noise_cpu", "transport.model_cpu",
    "transport.ratio_model_cpu",
    "live.n2.vad_latency", "live.n2.vad_from_send", "live.n2.turn_latency",
    "live.n2.server_cpu", "live.n2.server_cpu_main", "live.n2.postgres_cpu", "live.n2.rss",
    "live.n2.loadgen_cpu", "live.n2.machine_cpu", "live.max_sessions", "v2v.n2.share",
    "v2v.n2.v2v", "v2v.eager.v2v", "v2v.eager.saved", "v2v.sdk.turn", "v2v.beyond_sdk",
    "barge.detect", "barge.last_after_started", "barge.last_after_interrupted", "barge.late_audio",
    "persistence.rows_per_s", "persistence.idle_latency", "persistence.busy_latency",
    "persistence.p99_ratio", "offline.stt_rtf", "offline.llm_first_token",
    "offline.llm_tokens_per_s", "offline.tts_rtf", "offline.n1.turn", "offline.n1.v2v",
    "offline.n4.turn", "webrtc.cpu_per_call", "webrtc.capacity", "webrtc.steps",
    "cluster.remote_end", "cluster.local_end", "cluster.remote_over_local",
    "capacity.ours1.n2.vad", "capacity.ours1.n2.lag", "capacity.ours1.n2.from_send",
    "capacity.ours1.held", "capacity.ours1.per_core", "capacity.floor", "capacity.over_floor",
]  # fmt: skip


def _numeric(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@pytest.mark.timeout(300)
def test_smoke_run_reports_every_figure_as_a_number(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [path] = tmp_path.glob("bench-*-smoke.json")
    doc = json.loads(path.read_text())

    assert doc["errors"] == {}
    meta = doc["meta"]
    assert meta["cores"] >= 1 and meta["python"] and meta["date"]
    assert meta["packages"]["grpcio"] and meta["packages"]["onnxruntime"]

    figures = {f"{f['scenario']}.{f['key']}": f for f in doc["figures"]}
    assert len(ORDER) == len(SCENARIOS)
    assert set(SCENARIOS) == {f["scenario"] for f in doc["figures"]}
    missing = [key for key in EXPECTED if key not in figures]
    assert not missing, missing
    for key, fig in figures.items():
        numbers = [fig["value"]] if fig["value"] is not None else [fig["p50"], fig["p99"]]
        assert all(_numeric(x) for x in numbers), (key, fig)
    # The table names every figure too.
    for fig in figures.values():
        assert fig["label"][:64] in done.stdout
