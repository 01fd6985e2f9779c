"""6. Persistence: the write-behind writer against a real embedded Postgres, and what its work
costs the audio path when both share one event loop (as they do in the server).

(a) Throughput: `persist_turns` closed turns (`records.turn_closed`: user row, agent row,
metrics row) are submitted as fast as the loop can, then `flush()` awaited; rows/s counts
from the first submit to flush returning. Sessions are created (and flushed) beforehand and
the tables emptied before each run, untimed.

(b) Audio path, writer idle vs busy: 640-byte frames through the same `Operator` chain as
`bench/floors.py` (4 pass-through stages), one every 20 ms. A feeder thread posts each frame
into the loop at its due time (`call_soon_threadsafe`), as a socket read would wake it, so a
loop kept busy by the writer (asyncpg encoding batches, results, task switches) shows up as
latency; it is measured from the frame's due time to the last stage. Asyncio's own timers
round wake-ups up to the millisecond, which would swamp the microseconds measured here, hence
the thread. "Busy" runs the same frames while the writer drains a backlog sized from (a) to
outlast them (checked: the run records the fewest rows still pending at a busy phase's end).
Idle and busy phases alternate (ROUNDS of each per run), so other load on the machine falls
on both alike.

Postgres runs in a temporary DATA_DIR of its own, stopped and removed afterwards, even on error.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.floors import DEPTH, FRAME, PassThrough
from bench.registry import Figure, Recorder, Spec, scenario
from bench.stack import scratch_postgres_dir
from bench.stats import percentile, ratio
from pipeline.operator import Operator
from pipeline.turn import Turn
from server.config import Settings
from server.persistence.database import Database
from server.persistence.records import session_created, turn_closed
from server.persistence.writer import Write, WriteBehindWriter

FRAME_S = 0.020
WARMUP_FRAMES = 10  # per phase
ROUNDS = 4  # idle and busy phases alternate this many times per run
USER_TEXT = "What is the weather like today, and should I take an umbrella?"
AGENT_TEXT = "I cannot see the weather from here, but an umbrella never hurts. Anything else?"
POOL_SIZE = Settings.model_fields["db_pool_size"].default  # as the server opens it
MAX_PENDING = Settings.model_fields["db_writer_max_pending"].default

SPECS = {
    "rows_per_s": Spec(
        "writer throughput: turn rows/s, submit -> flush (3 rows a turn)",
        "rows/s",
        note="info, no goal",
    ),
    "idle_latency": Spec(
        f"audio path ({DEPTH} Operator stages), 20 ms pace, writer idle", "us", latency=True
    ),
    "busy_latency": Spec(
        f"audio path ({DEPTH} Operator stages), 20 ms pace, writer flushing", "us", latency=True
    ),
    "p99_ratio": Spec(
        "audio path p99, writer flushing / idle",
        "x",
        note="info, no goal: both are microseconds, far inside a 20 ms frame",
    ),
    "busy_rows_per_s": Spec("writer rows/s while the audio path runs beside it", "rows/s"),
}


@scenario("persistence", "Persistence (write-behind writer, embedded Postgres)")
def run(ctx: Context) -> list[Figure]:
    with scratch_postgres_dir("persist") as data_dir:
        return asyncio.run(_measure(ctx, data_dir))


async def _measure(ctx: Context, data_dir: Path) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("persistence", SPECS)
    ctx.log(f"persistence: starting an embedded Postgres in {data_dir}")
    db = await Database.open(None, data_dir, POOL_SIZE)
    try:
        for i in range(cfg.repeat):
            ctx.log(f"persistence: run {i + 1}/{cfg.repeat}")
            await _one_run(ctx, db, rec)
    finally:
        await db.close()
    return rec.figures()


async def _one_run(ctx: Context, db: Database, rec: Recorder) -> None:
    cfg = ctx.config
    async with db.pool.acquire() as conn:
        # CASCADE: every table that refers to sessions (tool calls, leases, ...) empties too.
        await conn.execute("TRUNCATE turns, turn_metrics, conversation_sessions, customers CASCADE")
    sessions = [str(uuid.uuid4()) for _ in range(cfg.persist_sessions)]
    # Room for the busy phase's backlog: the server's bound only limits memory in an outage.
    writer = WriteBehindWriter(db.pool, max_pending=max(MAX_PENDING, 2_000_000))
    writer.start()
    try:
        at = datetime.now(UTC)
        for sid in sessions:
            writer.submit(*session_created(sid, "", "Be brief.", None, {}, at))
        if not await writer.flush(60.0):
            raise RuntimeError("writer did not create the sessions within 60 s")

        # (a) throughput
        turns = _turn_writes(sessions, first_turn=1, count=cfg.persist_turns)
        rows = sum(len(t) for t in turns)
        written0 = writer.metrics["written"]
        start = time.perf_counter()
        for writes in turns:
            writer.submit(*writes)
        if not await writer.flush(300.0):
            raise RuntimeError(f"writer did not flush {rows} rows within 300 s")
        elapsed = time.perf_counter() - start
        _check(writer, written0, rows)
        rate = rows / elapsed
        async with db.pool.acquire() as conn:
            stored = await conn.fetchval("SELECT count(*) FROM turns")
        if stored != 2 * cfg.persist_turns:
            raise RuntimeError(f"{stored} turn rows stored, expected {2 * cfg.persist_turns}")
        rec.add("rows_per_s", rate)
        ctx.log(f"  writer: {rows} rows in {elapsed:.2f} s = {rate:,.0f} rows/s")

        # (b) audio path: idle and busy phases alternate, so load from elsewhere on the
        # machine falls on both alike; each busy phase has a backlog that outlasts it.
        per_phase = -(-cfg.persist_paced_frames // ROUNDS)
        window_s = (WARMUP_FRAMES + per_phase) * FRAME_S + 0.1
        backlog_turns = int(rate * (window_s * 1.5 + 0.5) / 3) + 1
        first_turn = cfg.persist_turns // len(sessions) + 2
        idle: list[float] = []
        busy: list[float] = []
        busy_written, busy_s, left = 0, 0.0, None
        for _ in range(ROUNDS):
            idle += await _paced(per_phase)
            backlog = _turn_writes(sessions, first_turn, backlog_turns)
            first_turn += backlog_turns // len(sessions) + 1
            for writes in backlog:
                writer.submit(*writes)
            written0 = writer.metrics["written"]
            t0 = time.perf_counter()
            busy += await _paced(per_phase)
            busy_s += time.perf_counter() - t0
            busy_written += writer.metrics["written"] - written0
            left = writer.pending if left is None else min(left, writer.pending)
            if not await writer.flush(300.0):
                raise RuntimeError("writer did not flush the backlog within 300 s")
        if not left:
            ctx.log("  note: the writer's backlog ran out before a busy phase ended")
        _check(writer, 0, 0)
    finally:
        await writer.close(5.0)
    rec.add("idle_latency", idle)
    rec.add("busy_latency", busy)
    busy_p99, idle_p99 = percentile(busy, 99), percentile(idle, 99)
    rec.add("p99_ratio", ratio(busy_p99, idle_p99))
    rec.add("busy_rows_per_s", busy_written / busy_s)
    rec.runs["busy_rows_per_s"][-1]["min_rows_pending_at_phase_end"] = left
    ctx.log(
        f"  audio path p50/p99 idle {percentile(idle, 50):.0f}/{idle_p99:.0f} us, "
        f"busy {percentile(busy, 50):.0f}/{busy_p99:.0f} us; fewest rows pending at a phase end {left}"
    )


def _check(writer: WriteBehindWriter, written0: int, rows: int) -> None:
    m = writer.metrics
    if m["dropped"] or m["failed"] or m["retries"]:
        raise RuntimeError(f"writer trouble: {dict(m)}")
    if rows and m["written"] - written0 != rows:
        raise RuntimeError(f"writer wrote {m['written'] - written0} rows, expected {rows}")


def _turn_writes(sessions: list[str], first_turn: int, count: int) -> list[list[Write]]:
    """`count` closed turns, round-robin over the sessions, as the session stage builds them."""
    at = datetime.now(UTC)
    out = []
    for i in range(count):
        index = first_turn + i // len(sessions)
        turn = Turn(
            index=index,
            user_text=USER_TEXT,
            speech_end_at=100.0,
            start_offset_ms=4000 * index,
            end_offset_ms=4000 * index + 2600,
            vad_stop_at=100.4,
            transcript_at=100.75,
            llm_request_at=100.75,
            llm_first_token_at=100.95,
            tts_request_at=101.0,
            tts_first_byte_at=101.01,
            first_audio_at=101.02,
            agent_text=AGENT_TEXT,
            audio_sent_ms=5200.0,
        )
        out.append(turn_closed(sessions[i % len(sessions)], turn, AGENT_TEXT, at))
    return out


class _Last(Operator[Any]):
    """The last stage: records due -> handled for every frame after the warm-up."""

    def __init__(self, total: int, warmup: int, done: asyncio.Event) -> None:
        super().__init__(None)
        self.total, self.warmup, self.done = total, warmup, done
        self.count = 0
        self.latencies: list[float] = []

    async def handle(self, item: tuple[float, bytes]) -> None:
        if self.count >= self.warmup:
            self.latencies.append((time.perf_counter() - item[0]) * 1e6)
        self.count += 1
        if self.count == self.total:
            self.done.set()


async def _paced(frames: int) -> list[float]:
    """Per-frame latency (us) from the due time to the last stage, frames posted by a thread."""
    loop = asyncio.get_running_loop()
    total = WARMUP_FRAMES + frames
    done = asyncio.Event()
    last = _Last(total, WARMUP_FRAMES, done)
    stages: list[Operator[Any]] = [last]
    for _ in range(DEPTH - 1):
        stages.append(PassThrough(stages[-1]))
    first = stages[-1]
    tasks = [asyncio.create_task(s.run()) for s in stages]

    def arrive(item: tuple[float, bytes]) -> None:
        try:
            first.inbox.put_nowait(item)
        except asyncio.QueueFull:  # the chain is > 32 frames behind: wait like a reader would
            tasks.append(asyncio.create_task(first.put(item)))

    t0 = time.perf_counter() + 0.05

    def feed() -> None:
        for i in range(total):
            due = t0 + i * FRAME_S
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            loop.call_soon_threadsafe(arrive, (due, FRAME))

    feeder = threading.Thread(target=feed, name="bench-frames", daemon=True)
    feeder.start()
    try:
        await asyncio.wait_for(done.wait(), total * FRAME_S + 30.0)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(feeder.join, 5.0)
    return last.latencies
