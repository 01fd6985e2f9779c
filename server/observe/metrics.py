"""Every Prometheus metric of the server, and the small functions that move them.

Why one module: names, labels and buckets are decided once, here, and docs/observability.md
and deploy/grafana/voiceagent.json follow them. Other code calls a function (`dead_air`,
`tool_call`, `provider_error`, `webrtc_late_frame`, ...) rather than touching a
prometheus_client object, so features built in parallel (the dead-air watchdog, tools) only
import a function. pipeline/ never imports this: sessions are observed from the server side
(server/observe/sessions.py) through the pipeline's neutral hooks.

Multi-process: prometheus_client decides when it is imported whether values live in this
process's memory or in files under PROMETHEUS_MULTIPROC_DIR (an environment variable, set before
the process starts; the directory must exist and be emptied before the first worker starts).
`exposition()` then merges the files of every process: counters and histograms add up, gauges
are summed over the processes still alive (`process_exit()` retires a process's gauges).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

# `*_created` timestamps double the series and no dashboard here uses them.
disable_created_metrics()

EDGES = ("grpc", "rest", "websocket", "realtime", "webrtc")
OTHER_EDGE = "other"  # a session opened without saying which edge it came in on
# Seconds; voice latencies live between ~10 ms (VAD) and a few seconds (a slow LLM).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)
# Turn.latency_ms() keys -> the `stage` label of voiceagent_stage_latency_seconds.
STAGES: Mapping[str, str] = {
    "vad_stop_to_transcript_ms": "vad_stop_to_transcript",
    "llm_first_token_ms": "llm_first_token",
    "tts_first_byte_ms": "tts_first_byte",
    "end_of_speech_to_first_audio_ms": "end_of_speech_to_first_audio",
}
WRITER_SAMPLE_S = 2.0  # how often the writer's backlog is sampled between scrapes

LIVE_SESSIONS = Gauge(
    "voiceagent_live_sessions",
    "Sessions with a live stream in this server, by edge.",
    ["edge"],
    multiprocess_mode="livesum",
)
SESSIONS_STARTED = Counter(
    "voiceagent_sessions_started_total", "Live streams opened (new or resumed), by edge.", ["edge"]
)
FRAMES_IN = Counter(
    "voiceagent_audio_frames_in_total",
    "Caller audio chunks pushed into sessions, by edge.",
    ["edge"],
)
FRAMES_OUT = Counter(
    "voiceagent_audio_frames_out_total", "Agent audio events sent by sessions, by edge.", ["edge"]
)
TURNS = Counter("voiceagent_turns_total", "Agent turns closed (answered, cut or failed).", ["edge"])
INTERRUPTIONS = Counter(
    "voiceagent_interruptions_total", "Barge-ins: agent turns interrupted by the caller.", ["edge"]
)
STAGE_LATENCY = Histogram(
    "voiceagent_stage_latency_seconds",
    "Per-turn latency of each stage, observed when the turn closes.",
    ["stage", "edge"],
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "voiceagent_provider_errors_total",
    "Provider calls that failed after their own retries, by role (stt, chat, tts) and code.",
    ["role", "code"],
)
TOOL_CALLS = Counter(
    "voiceagent_tool_calls_total", "Tool calls made by the agent, by outcome.", ["outcome"]
)
DEAD_AIR = Counter(
    "voiceagent_dead_air_total",
    "Dead air noticed by the watchdog: the caller waited too long, by the stage it waited on.",
    ["stage"],
)
WEBRTC_LATE_FRAMES = Counter(
    "voiceagent_webrtc_late_frames_total",
    "Agent audio frames a WebRTC call released more than one frame period late.",
)
WRITER_BACKLOG = Gauge(
    "voiceagent_writer_backlog",
    "Records queued for the database, not written yet.",
    multiprocess_mode="livesum",
)
WRITER_RETRIES = Counter(
    "voiceagent_writer_retries_total", "Database write batches retried (database unavailable)."
)
WRITER_DROPPED = Counter(
    "voiceagent_writer_dropped_total", "Records refused because the writer's queue was full."
)

for _edge in EDGES:  # every edge's series exists from the start (rate() needs two points)
    for _metric in (LIVE_SESSIONS, SESSIONS_STARTED, FRAMES_IN, FRAMES_OUT, TURNS, INTERRUPTIONS):
        _metric.labels(_edge)
    for _stage in STAGES.values():
        STAGE_LATENCY.labels(_stage, _edge)


def edge_label(edge: str) -> str:
    return edge or OTHER_EDGE


def dead_air(stage: str) -> None:
    """The dead-air watchdog noticed the caller waiting on `stage` (e.g. "llm", "tts")."""
    DEAD_AIR.labels(stage).inc()


def tool_call(outcome: str) -> None:
    """A tool call finished with `outcome`: completed, failed, timed_out or cancelled."""
    TOOL_CALLS.labels(outcome).inc()


def provider_error(role: str, code: str) -> None:
    """A provider of `role` (stt, chat, tts) failed with ProviderError.code `code`."""
    PROVIDER_ERRORS.labels(role, code).inc()


def webrtc_late_frame() -> None:
    WEBRTC_LATE_FRAMES.inc()


class WriterStats(Protocol):
    """What sync_writer reads (server.persistence.writer.WriteBehindWriter has it)."""

    @property
    def pending(self) -> int: ...

    @property
    def metrics(self) -> Mapping[str, int]: ...


_writer_seen: weakref.WeakKeyDictionary[object, dict[str, int]] = weakref.WeakKeyDictionary()


def sync_writer(writer: WriterStats) -> None:
    """Copy the writer's backlog and add its new retries and drops to the counters."""
    WRITER_BACKLOG.set(writer.pending)
    seen = _writer_seen.setdefault(writer, {})
    for key, counter in (("retries", WRITER_RETRIES), ("dropped", WRITER_DROPPED)):
        now = writer.metrics.get(key, 0)
        if now > seen.get(key, 0):
            counter.inc(now - seen.get(key, 0))
        seen[key] = now


async def sample_writer(writer: WriterStats, period_s: float = WRITER_SAMPLE_S) -> None:
    """Keep the writer's numbers fresh between scrapes (in multi-process mode a scrape reaches
    one worker; the others' files must be current on their own)."""
    while True:
        sync_writer(writer)
        await asyncio.sleep(period_s)  # a sampling period, not synchronisation


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (all processes' in multi-process mode), and its
    content type."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_exit(pid: int | None = None) -> None:
    """In multi-process mode: this process (or `pid`) is gone, its live gauges no longer count."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(os.getpid() if pid is None else pid)
