"""2. Transport floor: raw grpc.aio echo vs Converse (VAD on) from the same client.

Converse is measured three times: on digital silence (what a listening caller on a muted or
DTX line sends; the VAD's quiet gate keeps it from the model), on line noise above that level
(the gate learns the line's noise and the model hears one window in 8) and, on a server with
the gate off, on the same noise with the model on every window, as during speech (no goal:
the model's own cost, shown beside the rest; no turns start).

Converse does not echo, so its per-frame cost is measured as throughput (frames pushed per
second until the server has processed them all: the stream ends only after the VAD has seen
every frame) and as server CPU per frame, read from /proc/<pid>/stat. The echo is measured the
same way, so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import grpc
import numpy as np
from voiceagent.v1 import audio_pb2, converse_pb2
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from bench import echo
from bench.context import Context
from bench.procs import child, cpu_seconds
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.stack import FakeSettings, voice_stack
from bench.stats import ratio

SPECS = {
    "echo_rtt": Spec("gRPC echo round trip, 20 ms pace", "us", latency=True),
    "echo_wall": Spec("gRPC echo, wall time per frame (max rate)", "us"),
    "echo_cpu": Spec("gRPC echo, server CPU per frame", "us"),
    "converse_wall": Spec("Converse (VAD on), wall time per frame (max rate)", "us"),
    "converse_cpu": Spec("Converse (VAD on), server CPU per frame", "us"),
    "ratio_wall": Spec("Converse / echo, wall time per frame", "x"),
    "ratio_cpu": Spec(
        "Converse / echo, server CPU per frame", "x", goals=(Goal("value", "<=", 1.5),)
    ),
    "noise_cpu": Spec("Converse, line noise (-40 dBFS), server CPU per frame", "us"),
    "ratio_noise_cpu": Spec(
        "Converse line noise / echo, server CPU per frame", "x", goals=(Goal("value", "<=", 1.5),)
    ),
    "model_cpu": Spec("Converse, line noise, gate off (model on every window), CPU", "us"),
    "ratio_model_cpu": Spec("Converse gate off / echo, server CPU per frame", "x"),
}
GATE_OFF = {"VAD_SILENCE_DBFS": "", "VAD_NOISE_MARGIN_DB": ""}
# Line noise at -40 dBFS RMS: above the VAD's quiet level (-60), yet no speech (Silero reads
# it at < 0.05): the gate's noise margin, or with the gate off inference on every window.
NOISE_FRAMES = [  # a second of distinct frames, cycled: not one frame the gate sees again
    frame.round().astype("<i2").tobytes()
    for frame in np.random.default_rng(1).standard_normal((50, len(echo.FRAME) // 2))
    * (32768 * 10 ** (-40 / 20))
]


def _config() -> converse_pb2.ConverseRequest:
    fmt = audio_pb2.AudioFormat(
        encoding=audio_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hz=16_000, channels=1
    )
    return converse_pb2.ConverseRequest(config=converse_pb2.SessionConfig(input_format=fmt))


async def converse_flood(
    target: str, streams: int, frames: int, audio: Sequence[bytes] = (echo.FRAME,)
) -> float:
    """Seconds for `streams` Converse streams to each push `frames` frames (digital silence
    unless told: `audio` is cycled) and end."""
    requests = [converse_pb2.ConverseRequest(audio=frame) for frame in audio]

    async def one(stub: pb_grpc.VoiceAgentServiceStub) -> None:
        call = stub.Converse()
        await call.write(_config())
        for i in range(frames):
            await call.write(requests[i % len(requests)])
        await call.done_writing()
        async for _ in call:  # the stream ends once the server has processed every frame
            pass

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.VoiceAgentServiceStub(channel)
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(stub) for _ in range(streams))), 300.0)
        return time.perf_counter() - start


def _per_frame(pid: int, run, frames: int) -> tuple[float, float]:
    """(wall us, server CPU us) per frame for one measured flood."""
    cpu0 = cpu_seconds(pid)
    wall = asyncio.run(run())
    return wall / frames * 1e6, (cpu_seconds(pid) - cpu0) / frames * 1e6


@scenario("transport", "Transport floor (gRPC echo vs Converse, separate processes)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("transport", SPECS)
    s, n = cfg.transport_streams, cfg.transport_frames
    total = s * n
    results: list[dict[str, float]] = [{} for _ in range(cfg.repeat)]
    with child("echo-server", "bench.echo") as proc:
        target = f"127.0.0.1:{proc.read_prefixed('PORT', 30.0)}"
        asyncio.run(echo.flood(target, s, max(10, n // 10)))  # warm-up
        for i, res in enumerate(results):
            ctx.log(f"transport: echo run {i + 1}/{cfg.repeat}")
            rec.add(
                "echo_rtt", asyncio.run(echo.paced_rtt(target, cfg.paced_frames, cfg.warmup_frames))
            )
            res["echo_wall"], res["echo_cpu"] = _per_frame(
                proc.pid, lambda: echo.flood(target, s, n), total
            )
    with voice_stack(ctx, FakeSettings()) as stack:
        for audio in ((echo.FRAME,), NOISE_FRAMES):  # warm-up on each kind of audio measured
            asyncio.run(converse_flood(stack.target, s, max(10, n // 10), audio))
        for i, res in enumerate(results):
            ctx.log(f"transport: Converse run {i + 1}/{cfg.repeat}")
            res["converse_wall"], res["converse_cpu"] = _per_frame(
                stack.server.pid, lambda: converse_flood(stack.target, s, n), total
            )
            _, res["noise_cpu"] = _per_frame(
                stack.server.pid, lambda: converse_flood(stack.target, s, n, NOISE_FRAMES), total
            )
    with voice_stack(ctx, FakeSettings(), env=GATE_OFF) as stack:
        asyncio.run(converse_flood(stack.target, s, max(10, n // 10), NOISE_FRAMES))  # warm-up
        for i, res in enumerate(results):
            ctx.log(f"transport: Converse with the VAD gate off, run {i + 1}/{cfg.repeat}")
            _, res["model_cpu"] = _per_frame(
                stack.server.pid, lambda: converse_flood(stack.target, s, n, NOISE_FRAMES), total
            )
    for res in results:
        for key, value in res.items():
            rec.add(key, value)
        rec.add("ratio_wall", ratio(res["converse_wall"], res["echo_wall"]))
        rec.add("ratio_cpu", ratio(res["converse_cpu"], res["echo_cpu"]))
        rec.add("ratio_noise_cpu", ratio(res["noise_cpu"], res["echo_cpu"]))
        rec.add("ratio_model_cpu", ratio(res["model_cpu"], res["echo_cpu"]))
    return rec.figures()
