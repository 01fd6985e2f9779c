"""WebRTC capacity: CPU per live call, and how many calls one server process carries before
its outbound audio misses the 20 ms pacing.

    python -m bench.webrtc_calls [--calls 1,2,4,8,16,24,32] [--seconds 15]

Runs in a private network namespace (it re-runs itself under `unshare -n`; root needed), as
the tests do: ICE needs interface addresses and this traffic must not touch the machine's.
Three processes: the server (VoiceServer plus the WebRTC routes), the fake OpenAI, and this
one holding N aiortc callers. Each caller speaks a short utterance every few seconds, so the
server decodes Opus, runs VAD, gets a reply and sends paced agent audio, like a real call.
Per step the server's CPU (from /proc) and its tracks' pacing counters (GET /webrtc/calls)
are sampled over a steady window. A frame released more than 20 ms after its slot is late;
capacity is the largest N with under 1% late frames. Bounded: it stops at the first failing
step, and every child dies with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
NETNS_MARK = "WEBRTC_BENCH_NETNS"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
LATE_LIMIT = 0.01  # capacity: under 1% of frames late


def die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime


async def serve(args: argparse.Namespace) -> None:
    """The server process: a VoiceServer with the bridge's routes, on the namespace's address."""
    from server.app import VoiceServer
    from server.config import Settings
    from webrtc_bridge.routes import router

    settings = Settings(
        _env_file=None, grpc_host="127.0.0.1", grpc_port=0, http_host="0.0.0.0", http_port=0,
        allow_unauthenticated=True,  # inside its own network namespace
        openai_api_key="bench", openai_base_url=args.fake_url, vad_stop_ms=400,
        data_dir=Path(args.data_dir), database_url=None, max_sessions=10_000,
    )  # fmt: skip
    server = VoiceServer(settings)
    await server.start()
    app = server.http.config.app
    if not any(getattr(r, "path", "") == "/webrtc/offer" for r in app.routes):
        app.include_router(router)  # until the facade's create_app includes it
    print(f"PORT {server.http_port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    await server.stop()


def child(args: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    """Start `python <args>` (stderr to `log`), wait for its `PORT n` line."""
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.PIPE,
            stderr=err, preexec_fn=die_with_parent,
        )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"PORT "):  # then keep draining: a full pipe would block the child
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            return proc, int(line.split()[1])
    raise RuntimeError(f"{args} exited before serving (status {proc.wait()}); see {log}")


class Load:
    """N aiortc callers against the server, each speaking now and then."""

    def __init__(self, base: str, speech: bytes) -> None:
        self.base, self.speech = base, speech
        self.callers: list = []
        self.tasks: list[asyncio.Task] = []

    async def add(self, n: int) -> None:
        from testing.webrtc_peer import Caller, MicTrack

        for _ in range(n):
            caller = Caller(self.base, MicTrack(48_000, 2))
            await caller.call()
            self.callers.append(caller)
            self.tasks.append(asyncio.create_task(self._talk(caller)))
            await asyncio.sleep(0.1)

    async def _talk(self, caller) -> None:
        await asyncio.sleep(random.uniform(0, 3))
        while True:
            spoken = caller.mic.play(self.speech)
            await asyncio.sleep(spoken + random.uniform(3.0, 5.0))

    def turns(self) -> list[dict]:
        return [t for c in self.callers for t in c.of("turn_completed")]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for caller in self.callers:
            caller.send({"type": "hang_up"})
            await caller.close()
        self.callers, self.tasks = [], []


async def pacing(http: httpx.AsyncClient) -> dict:
    calls = (await http.get("/webrtc/calls")).json()["calls"]
    keys = ("frames", "late_frames", "resyncs", "speech_frames")
    total = {k: sum(c["agent_audio"][k] for c in calls) for k in keys}
    total["max_late_ms"] = max((c["agent_audio"]["max_late_ms"] for c in calls), default=0.0)
    return total


async def step(n: int, load: Load, http: httpx.AsyncClient, server_pid: int, seconds: float):
    await load.add(n - len(load.callers))
    await asyncio.sleep(3)  # steady state
    turns0, before, cpu0, t0 = (
        len(load.turns()),
        await pacing(http),
        cpu_seconds(server_pid),
        time.monotonic(),
    )
    own0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    after, cpu1, t1 = await pacing(http), cpu_seconds(server_pid), time.monotonic()
    own1 = resource.getrusage(resource.RUSAGE_SELF)
    frames = max(1, after["frames"] - before["frames"])
    late = after["late_frames"] - before["late_frames"]
    latencies = sorted(
        t["latency"]["end_of_speech_to_first_audio_ms"] for t in load.turns()[turns0:]
        if t["latency"]["end_of_speech_to_first_audio_ms"] >= 0
    )  # fmt: skip
    wall = t1 - t0
    return {
        "calls": n,
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / wall, 1),
        "callers_cpu_pct": round(
            100 * (own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime) / wall, 1
        ),
        "frames": frames,
        "late_pct": round(100 * late / frames, 2),
        "max_late_ms": round(after["max_late_ms"], 1),
        "resyncs": after["resyncs"] - before["resyncs"],
        "turns": len(latencies),
        "first_audio_p50_ms": latencies[len(latencies) // 2] if latencies else None,
    }  # fmt: skip


async def bench(args: argparse.Namespace) -> dict:
    from testing.speech import speech_pcm
    from testing.webrtc_netns import ADDRESSES, set_up

    set_up()
    load_before = [round(x, 2) for x in os.getloadavg()]  # others' work skews the numbers
    work = Path(tempfile.mkdtemp(prefix="webrtc-bench-"))
    fake, fake_port = child(
        ["-m", "testing.fakes", "--transcript", "tell me something interesting about the weather",
         "--tts-ms-per-char", "25", "--max-seconds", str(args.max_seconds)],
        work / "fake.log",
    )  # fmt: skip
    server, port = child(
        ["-m", "bench.webrtc_calls", "--serve", "--fake-url", f"http://127.0.0.1:{fake_port}/v1",
         "--data-dir", str(work), "--max-seconds", str(args.max_seconds)],
        work / "server.log",
    )  # fmt: skip
    speech = speech_pcm("Can you tell me something interesting?", 48_000, 2, 200, 800)
    results: list[dict] = []
    try:
        base = f"http://{ADDRESSES[0]}:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            await asyncio.sleep(3)
            idle = 100 * (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0)
            load = Load(base, speech)
            for n in args.calls:
                result = await step(n, load, http, server.pid, args.seconds)
                result["cpu_per_call_pct"] = round((result["server_cpu_pct"] - idle) / n, 2)
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
                if result["late_pct"] >= 100 * LATE_LIMIT * 5 or result["server_cpu_pct"] > 190:
                    break
            await load.close()
    finally:
        for proc in (server, fake):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    ok = [r["calls"] for r in results if r["late_pct"] < 100 * LATE_LIMIT and not r["resyncs"]]
    return {"idle_server_cpu_pct": round(idle, 1), "steps": results,
            "capacity_calls": max(ok, default=0), "cores": os.cpu_count(),
            "load_average_before": load_before}  # fmt: skip


def table(report: dict) -> str:
    head = f"{'calls':>5} {'server CPU%':>11} {'per call%':>9} {'late%':>6} {'max late ms':>11} {'p50 first audio ms':>18}"
    rows = [
        f"{r['calls']:>5} {r['server_cpu_pct']:>11} {r['cpu_per_call_pct']:>9} {r['late_pct']:>6} "
        f"{r['max_late_ms']:>11} {str(r['first_audio_p50_ms']):>18}"
        for r in report["steps"]
    ]
    tail = (f"idle server CPU {report['idle_server_cpu_pct']}%; capacity (late < 1%): "
            f"{report['capacity_calls']} calls on {report['cores']} cores "
            f"(load average before: {report['load_average_before']})")  # fmt: skip
    return "\n".join([head, *rows, tail])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.webrtc_calls", description=__doc__)
    p.add_argument("--calls", default="1,2,4,8,12,16,24,32,48", help="concurrent call steps")
    p.add_argument("--seconds", type=float, default=15.0, help="measured window per step")
    p.add_argument("--max-seconds", type=float, default=900.0, help="backstop for children")
    p.add_argument("--json", help="also write the report here")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fake-url", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.serve:
        args.calls = sorted({int(x) for x in args.calls.split(",") if x.strip()})
    return args


def main() -> None:
    args = parse_args()
    if args.serve:
        asyncio.run(serve(args))
        return
    if os.environ.get(NETNS_MARK) != "1":  # re-run inside a private network namespace
        env = {**os.environ, NETNS_MARK: "1"}
        cmd = ["unshare", "-n", sys.executable, "-m", "bench.webrtc_calls", *sys.argv[1:]]
        sys.exit(subprocess.call(cmd, cwd=ROOT, env=env))
    report = asyncio.run(bench(args))
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
