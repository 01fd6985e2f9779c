"""Transport floor: a raw grpc.aio bidirectional echo, no proto, no pipeline.

`python -m bench.echo` serves `/bench.Echo/Echo` with a generic handler (bytes in, the same
bytes out) on the same kind of grpc.aio server as VoiceServer, prints `PORT <n>`, and exits
when stdin closes. The client functions measure it the way the Converse figures are measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator

import grpc

from bench.procs import cpu_seconds

METHOD = "/bench.Echo/Echo"
FRAME = bytes(640)
FRAME_S = 0.02


async def _echo(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext):
    async for frame in requests:
        yield frame


async def _sink(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    """Read every frame, answer once the client half-closes: the receive side alone, as a
    listening Converse stream uses the transport."""
    async for _ in requests:
        pass
    return b""


async def serve() -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handlers: dict[str, grpc.RpcMethodHandler] = {  # no (de)serializers: raw bytes
        "Echo": grpc.stream_stream_rpc_method_handler(_echo),
        "Sink": grpc.stream_unary_rpc_method_handler(_sink),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def stdin_eof() -> None:  # daemon thread: a blocked read must not hold up exit
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.buffer.read()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=stdin_eof, daemon=True).start()
    print(f"PORT {port}", flush=True)
    await stop.wait()
    await server.stop(0.5)


def _call(channel: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(METHOD)()


async def paced_rtt(target: str, frames: int, warmup: int) -> list[float]:
    """Round trip (us) of one stream's frames, frame i sent at t0 + i * 20 ms."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = _call(channel)
        out: list[float] = []
        t0 = time.perf_counter() + 0.05
        for i in range(warmup + frames):
            delay = t0 + i * 0.020 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            await call.write(FRAME)
            await asyncio.wait_for(call.read(), 5.0)
            if i >= warmup:
                out.append((time.perf_counter() - sent) * 1e6)
        await call.done_writing()
        call.cancel()
        return out


async def flood(target: str, streams: int, frames: int) -> float:
    """Seconds to push `frames` frames on each of `streams` streams and read every echo."""

    async def one(channel: grpc.aio.Channel) -> None:
        call = _call(channel)

        async def write() -> None:
            for _ in range(frames):
                await call.write(FRAME)
            await call.done_writing()

        writer = asyncio.create_task(write())
        try:
            for _ in range(frames):
                await call.read()
            await writer
        finally:
            writer.cancel()

    async with grpc.aio.insecure_channel(target) as channel:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(channel) for _ in range(streams))), 120.0)
        return time.perf_counter() - start


async def paced_sink(target: str, streams: int, seconds: float, pid: int) -> float:
    """`streams` Sink streams, each on a connection of its own (as the load generators'
    callers) sending a frame every 20 ms for `seconds`, starts spread over one frame: the
    server `pid`'s CPU seconds over those `seconds`, set-up and tear-down left out."""
    t0 = time.perf_counter() + 0.5 + streams * 0.01  # every stream connected by then

    async def one(i: int) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            call: grpc.aio.StreamUnaryCall = channel.stream_unary("/bench.Echo/Sink")()
            start, k = t0 + FRAME_S * i / streams, 0
            while (at := start + k * FRAME_S) < t0 + seconds:
                if (delay := at - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                await call.write(FRAME)
                k += 1
            await call.done_writing()
            await call

    async def measure() -> float:
        await asyncio.sleep(t0 - time.perf_counter())
        cpu0 = cpu_seconds(pid)
        await asyncio.sleep(seconds)
        return cpu_seconds(pid) - cpu0

    calls = asyncio.gather(*(one(i) for i in range(streams)))
    used, _ = await asyncio.wait_for(asyncio.gather(measure(), calls), seconds + 60.0)
    return used


if __name__ == "__main__":
    asyncio.run(serve())
