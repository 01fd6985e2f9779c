"""Benchmark settings (full and smoke) and the context handed to every scenario."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchConfig:
    repeat: int = 3  # runs per figure; each figure is the median over them
    smoke: bool = False
    # 1. pipeline overhead
    paced_frames: int = 200  # per chain and run, 20 ms apart
    warmup_frames: int = 20  # not counted
    flood_frames: int = 20_000  # max-throughput push, after a warm-up of a tenth of it
    # 2. transport floor
    transport_streams: int = 4
    transport_frames: int = 2_000  # per stream, pushed as fast as flow control allows
    # 3./4. live sessions (real-time streams against `python -m server`)
    sessions: tuple[int, ...] = (50, 100, 200, 400)
    v2v_sessions: tuple[int, ...] = (1, 100)
    sdk_turns: int = 10  # v2v: turns of the SDK alone (bench.sdk_floor), 1 s apart, per repeat
    utterance: str = "What is the weather like today?"
    cycle_s: float = 4.0  # each stream speaks the utterance once per cycle
    measure_cycles: float = 2.0  # measured window, after one cycle of warm-up
    min_measured_turns: int = 4  # a lone stream measures longer, to have a few turns
    grace_s: float = 1.5  # streams keep going after the window so its last turns complete
    # A load generator is one asyncio loop: at 100 streams its own lateness reached p99 32 ms
    # (the figure then measures it, not the server); at 25, 12 ms on this 2-core machine.
    streams_per_loadgen: int = 25
    stt_latency_s: float = 0.05
    chat_latency_s: float = 0.05
    tts_latency_s: float = 0.05
    tts_ms_per_char: float = 20.0
    vad_start_ms: int = 200
    vad_stop_ms: int = 400
    output_lead_ms: int = 300
    # 5. barge-in
    barge_streams: int = 10
    barge_delay_s: float = 0.3  # user starts talking this long after the agent's first audio
    barge_tts_ms_per_char: float = 150.0  # replies of a few seconds, so there is audio to cut
    barge_measure_s: float = 8.0
    # 6. persistence (write-behind writer, embedded Postgres of its own)
    persist_turns: int = 20_000  # turns submitted at once (3 rows each), timed to flush()
    persist_sessions: int = 200  # the turns are spread over this many sessions
    persist_paced_frames: int = 200  # audio-path frames per state (idle, writer busy), 20 ms apart
    # 7. offline (local models, in process and through `python -m server`)
    offline_sessions: tuple[int, ...] = (1, 4)
    offline_turns: int = 4  # counted utterances per session
    offline_warmup_turns: int = 1  # per session, before them, not counted
    offline_listen_s: float = 1.5  # after the first agent audio, then an INTERRUPT (next turn)
    offline_model_items: int = 3  # sentences for STT/TTS, prompts for the LLM, per run
    offline_llm_tokens: int = 48  # max tokens per prompt for the tokens/s figure
    # 8. capacity side by side (one process, two, the Pipecat peer with --peer)
    capacity_systems: tuple[str, ...] = ("ours1", "ours2", "pipecat")
    capacity_sessions: tuple[int, ...] = (25, 50, 100, 150, 200, 250, 300)  # climbed to a miss
    capacity_peer_sessions: tuple[int, ...] = (2, 5, 10, 20, 40, 80)
    capacity_cycle_s: float = 8.0  # an utterance every 8 s per stream
    capacity_measure_cycles: float = 2.0
    peer: bool = False  # also run Pipecat (needs bench/.venv-pipecat: `make bench-peer`)
    # 9. cluster control latency (two replicas, one Postgres)
    cluster_rounds: int = 200  # EndSession rounds per run, remote and local interleaved
    results_dir: Path = ROOT / "bench" / "results"
    profile_dir: Path | None = None  # run each server under cProfile, one .prof file each

    @property
    def provider_latency_s(self) -> float:
        return self.stt_latency_s + self.chat_latency_s + self.tts_latency_s

    @classmethod
    def for_smoke(cls, **overrides: Any) -> BenchConfig:
        """Tiny and quick: proves every figure is produced, says nothing about speed."""
        base = cls(
            repeat=1,
            smoke=True,
            paced_frames=20,
            warmup_frames=5,
            flood_frames=2_000,
            transport_streams=2,
            transport_frames=200,
            sessions=(2,),
            v2v_sessions=(2,),
            sdk_turns=2,
            utterance="What time is it?",
            cycle_s=3.0,
            measure_cycles=1.0,
            min_measured_turns=1,
            barge_streams=2,
            barge_measure_s=4.0,
            persist_turns=300,
            persist_sessions=10,
            persist_paced_frames=20,
            offline_turns=1,
            offline_warmup_turns=0,
            offline_listen_s=0.3,
            offline_model_items=1,
            offline_llm_tokens=8,
            cluster_rounds=10,
            capacity_systems=("ours1",),  # the same job as the live run: reused, no extra time
            capacity_sessions=(2,),
            capacity_peer_sessions=(2,),
            capacity_cycle_s=3.0,
            capacity_measure_cycles=1.0,
        )
        return replace(base, **overrides)


@dataclass
class Context:
    config: BenchConfig
    data_dir: Path  # the servers' DATA_DIR (embedded Postgres), one per benchmark invocation
    cache: dict[Any, Any] = field(default_factory=dict)  # runs shared between scenarios
    started: float = field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[bench {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
