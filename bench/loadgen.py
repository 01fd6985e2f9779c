"""`python -m bench.loadgen`: a load-generator process driving real-time Converse streams.

It runs apart from the server so the two do not share a GIL. Protocol on stdin/stdout: a JSON
job line in; `READY` once every stream has its session; `GO <start_at>` in (a perf_counter
time, CLOCK_MONOTONIC, so the same clock in every process); `RESULT <json>` out at the end.
Everything is bounded by the job's end time; a closed stdin before GO ends the process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from typing import Any

import grpc
import websockets
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from bench.streams import FRAME_S, FRAME_SAMPLES, Script, VadTiming, config

CONNECT_TIMEOUT_S = 60.0
OUT_RATE_BYTES_PER_MS = 48  # 24 kHz int16 agent audio
FRAME_BYTES = 2 * FRAME_SAMPLES
SENT_RING = 1024  # ~20 s of frames: far more than any event can lag and still be counted


class Stream:
    """One caller: frames on an absolute 20 ms schedule, every event timed on arrival."""

    def __init__(self, job: dict, index: int, out: dict[str, Any]) -> None:
        self.job, self.out, self.index = job, out, index
        self.vad = VadTiming(**job["vad"])
        self.barge = job["mode"] == "barge"
        self.script = Script(job["text"], None if self.barge else job["cycle_s"])
        self.offset_s = job["stagger_s"] * index / job["total"]
        self.t0 = 0.0
        self.pending: dict[int, tuple[float, float]] = {}  # end offset -> (last speech, trigger)
        self.turn_stop: dict[int, tuple[float, float]] = {}  # turn -> (last speech, trigger)
        self.audio: dict[int, list[tuple[float, float]]] = defaultdict(list)  # (arrival, ms)
        self.cuts: dict[int, dict[str, float]] = {}  # barge-ins by interrupted turn
        self.speaking: int | None = None
        self.closing = self.broken = False
        self.sent = [0.0] * SENT_RING  # actual send time of recent frames, by index % ring

    async def connect(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[("grpc.use_local_subchannel_pool", 1)],  # one connection each
        )
        self.call = pb_grpc.VoiceAgentServiceStub(self.channel).Converse()
        await self.call.write(config(self.vad))
        first = await self.call.read()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "session_started":
            raise RuntimeError(f"expected session_started, got {first}")

    def sched(self, frame: int) -> float:
        return self.t0 + frame * FRAME_S

    def counted(self, at: float) -> bool:
        job = self.job
        return job["measure_from"] <= at < job["measure_to"] and at >= self.t0 + job["warmup_s"]

    async def run(self, start_at: float, end_at: float) -> None:
        self.t0 = start_at + self.offset_s
        if self.barge:
            self.script.speak()  # the first turn; later ones talk over the agent
        reader = asyncio.create_task(self._read())
        try:
            await self._write(end_at)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            self._failed(exc)
        finally:
            self.closing = True
            self.call.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self.channel.close()
            self._finish()

    def _failed(self, exc: Exception) -> None:
        """Count a stream that broke before the caller hung up (once per stream)."""
        if self.closing or self.broken:
            return
        self.broken = True
        self.out["failed_streams"] += 1
        if len(self.out["failed"]) < 20:
            detail = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
            self.out["failed"].append(str(detail)[:200])

    async def _write(self, end_at: float) -> None:
        lag = self.out["lag"]
        i = 0
        while (at := self.sched(i)) < end_at:
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = self.sent[i % SENT_RING] = time.perf_counter()
            if self.counted(at):
                lag.append(round((now - at) * 1000, 3))
            await self._send(self.script.request(i))
            i += 1

    async def _send(self, request: Any) -> None:
        await self.call.write(request)

    async def _read(self) -> None:
        try:
            while (event := await self.call.read()) is not grpc.aio.EOF:
                self._on(event.WhichOneof("event"), event, time.perf_counter())
        except grpc.aio.AioRpcError as exc:
            self._failed(exc)
            return
        self._failed(RuntimeError("the server ended the stream early"))

    def _ms(self, later: float, earlier: float) -> float:
        return round((later - earlier) * 1000, 3)

    def _on(self, kind: str, event: Any, now: float) -> None:
        out = self.out
        if kind == "speech_started":
            frame = self.vad.start_trigger(event.speech_started.offset_ms)
            trigger = self.sched(frame)
            if self.counted(trigger):
                out["vad_start"].append(self._ms(now, trigger))
                out["vad_from_send"].append(self._ms(now, self.sent[frame % SENT_RING]))
            if self.speaking is not None and self.speaking not in self.cuts:
                self.cuts[self.speaking] = {"started": now, "trigger": trigger}
        elif kind == "speech_stopped":
            end = event.speech_stopped.end_offset_ms
            last = self.sched(self.vad.last_speech(end))
            frame = self.vad.stop_trigger(end)
            trigger = self.sched(frame)
            self.pending[end] = (last, trigger)
            if self.counted(trigger):
                out["vad_stop"].append(self._ms(now, trigger))
                out["vad_from_send"].append(self._ms(now, self.sent[frame % SENT_RING]))
        elif kind == "transcript":
            stop = self.pending.pop(event.transcript.end_offset_ms, None)
            if stop is not None:
                self.turn_stop[event.transcript.turn_index] = stop
        elif kind == "agent_audio":
            turn = event.agent_audio.turn_index
            chunks = self.audio[turn]
            chunks.append((now, len(event.agent_audio.audio) / OUT_RATE_BYTES_PER_MS))
            if len(chunks) == 1:
                self._first_audio(turn, now)
        elif kind == "interrupted":
            cut = self.cuts.get(event.interrupted.turn_index)
            if cut is not None:
                cut["interrupted"] = now
            out["interrupted"] += 1
        elif kind == "turn_completed":
            done = event.turn_completed
            if self.speaking == done.turn_index:
                self.speaking = None
            stop = self.turn_stop.get(done.turn_index)
            if stop is not None and self.counted(stop[1]) and not done.interrupted:
                lat = done.latency
                out["server_turn"].append(lat.end_of_speech_to_first_audio_ms)
                out["stt_ms"].append(lat.vad_stop_to_transcript_ms)
                out["llm_ms"].append(lat.llm_first_token_ms)
                out["tts_ms"].append(lat.tts_first_byte_ms)
                out["turns"] += 1
        elif kind == "error":
            out["error_events"] += 1
            if len(out["errors"]) < 20:
                out["errors"].append(event.error.message[:200])

    def _first_audio(self, turn: int, now: float) -> None:
        self.speaking = turn
        stop = self.turn_stop.get(turn)
        if stop is not None and self.counted(stop[1]):
            last, trigger = stop
            self.out["v2v"].append(self._ms(now, last))
            self.out["share"].append(self._ms(now, trigger) - self.job["provider_s"] * 1000)
        if self.barge:  # the caller talks over the reply a moment after it starts
            asyncio.get_running_loop().call_later(self.job["barge_delay_s"], self.script.speak)

    def _finish(self) -> None:
        for turn, cut in self.cuts.items():
            chunks = self.audio.get(turn)
            if "interrupted" not in cut or not chunks or not self.counted(cut["trigger"]):
                continue
            last = chunks[-1][0]
            late = sum(ms for at, ms in chunks if at > cut["started"] + FRAME_S)
            self.out["barge"].append(
                {
                    "detect_ms": self._ms(cut["started"], cut["trigger"]),
                    "last_after_started_ms": self._ms(last, cut["started"]),
                    "last_after_interrupted_ms": self._ms(last, cut["interrupted"]),
                    "late_audio_ms": round(late, 3),
                }
            )


SAMPLES = (  # lists of ms, one entry per counted event (or frame, for "lag")
    "vad_start", "vad_stop", "vad_from_send", "v2v", "share", "lag",
    "server_turn", "stt_ms", "llm_ms", "tts_ms",  # the server's TurnLatency, per counted turn
    "barge",  # dicts, one per counted barge-in
)  # fmt: skip


def empty_result() -> dict[str, Any]:
    counters = ("failed_streams", "error_events", "turns", "interrupted")
    return {
        **{k: [] for k in SAMPLES},
        **dict.fromkeys(counters, 0),
        "errors": [],  # first few messages, for the log
        "failed": [],
    }


class PeerStream(Stream):
    """The same caller against the Pipecat peer's WebSocket (bench/peer/pipecat_bot.py): the
    same frames on the same schedule; its VAD events say how many input bytes the analyzer
    had consumed, which names the frame that completed the debounce."""

    async def connect(self, target: str) -> None:
        self.ws = await websockets.connect(f"ws://{target}/ws", max_size=None, compression=None)

    async def run(self, start_at: float, end_at: float) -> None:
        self.t0 = start_at + self.offset_s
        reader = asyncio.create_task(self._read())
        try:
            await self._write(end_at)
        except websockets.ConnectionClosed as exc:
            self._failed(exc)
        finally:
            self.closing = True
            await self.ws.close()
            await asyncio.gather(reader, return_exceptions=True)

    async def _send(self, request: Any) -> None:
        await self.ws.send(request.audio)

    async def _read(self) -> None:
        replying = False
        try:
            async for msg in self.ws:
                now = time.perf_counter()
                if isinstance(msg, bytes):
                    if replying:  # the first agent audio after the user stopped: a turn
                        replying = False
                        self.out["turns"] += 1
                    continue
                event = json.loads(msg)
                frame = event["consumed"] // FRAME_BYTES - 1
                trigger = self.sched(frame)
                if self.counted(trigger):
                    key = "vad_start" if event["event"] == "speech_started" else "vad_stop"
                    self.out[key].append(self._ms(now, trigger))
                    self.out["vad_from_send"].append(self._ms(now, self.sent[frame % SENT_RING]))
                replying = event["event"] == "speech_stopped"
        except websockets.ConnectionClosed as exc:
            self._failed(exc)
            return
        if not self.closing:
            self._failed(RuntimeError("the server ended the stream early"))


async def main() -> None:
    job = json.loads(sys.stdin.readline())
    out = empty_result()
    kind = PeerStream if job.get("transport") == "ws" else Stream
    streams = [kind(job, job["first_index"] + i, out) for i in range(job["count"])]
    gate = asyncio.Semaphore(32)
    targets = job["targets"]

    async def connect(stream: Stream) -> None:
        async with gate:  # streams spread over the servers (workers) round robin
            await stream.connect(targets[stream.index % len(targets)])

    await asyncio.wait_for(asyncio.gather(*(connect(s) for s in streams)), CONNECT_TIMEOUT_S)
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line.startswith("GO "):
        return
    start_at = float(line.split()[1])
    end_at = start_at + job["end"]
    job["measure_from"] += start_at  # job times are relative to the start until now
    job["measure_to"] += start_at
    cpu0 = time.process_time()
    await asyncio.wait_for(
        asyncio.gather(*(s.run(start_at, end_at) for s in streams)), job["end"] + 30.0
    )
    out["cpu_s"] = time.process_time() - cpu0
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
