"""`python -m testing.fakes`: FakeOpenAI as its own process, for servers started as `make run`
does (the benchmarks).

Prints `PORT <n>` once listening, then serves until SIGINT/SIGTERM, stdin closing (the parent
is gone) or `--max-seconds`. Recorded requests are dropped every second: a long benchmark must
not grow the fake's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading

from testing.fakes.openai_server import FakeOpenAI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testing.fakes", description=__doc__)
    p.add_argument("--stt-latency", type=float, default=0.0, help="seconds")
    p.add_argument("--chat-latency", type=float, default=0.0, help="seconds")
    p.add_argument("--tts-latency", type=float, default=0.0, help="seconds")
    p.add_argument("--chat-token-delay", type=float, default=0.0, help="seconds")
    p.add_argument("--tts-ms-per-char", type=float, default=20.0)
    p.add_argument("--transcript", default="hello there", help="what every STT call returns")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="backstop lifetime")
    return p.parse_args(argv)


def _on_stdin_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Sets `stop` when stdin reaches EOF (the parent closed its pipe or died).

    A daemon thread, not the loop's executor: a blocked read must not hold up exit."""

    def wait() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.buffer.read()
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait, name="stdin-eof", daemon=True).start()


async def serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI()
    fake.latency.update(
        transcriptions=args.stt_latency, chat=args.chat_latency, speech=args.tts_latency
    )
    fake.chat_token_delay = args.chat_token_delay
    fake.tts_ms_per_char = args.tts_ms_per_char
    fake.default_transcript = args.transcript
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _on_stdin_eof(loop, stop)
    async with fake:
        print(f"PORT {fake.port}", flush=True)
        deadline = loop.time() + args.max_seconds
        while not stop.is_set() and loop.time() < deadline:
            fake.requests.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def main() -> None:
    asyncio.run(serve(parse_args()))


if __name__ == "__main__":
    main()
