"""`WORKERS=2` as `make run` starts it: one parent, two `python -m server` workers sharing the
ports, one embedded Postgres; every edge served, a killed worker restarted, SIGTERM drained."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import asyncpg
import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc
from websockets.asyncio.client import connect

from server.http.serve import WORKER_HEADER
from server.persistence.database import EmbeddedPostgres, postmaster_pid
from server.persistence.supervisor import process_state
from server.workers.restarts import RestartPolicy
from server.workers.role import cores
from testing.converse_client import Conversation, config, text
from testing.webrtc_peer import Caller

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 90  # both workers import and start in parallel on a loaded 2-core machine


class Parent:
    """The parent process and its log (stderr, read as it comes: workers log there too)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._more = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self._more.set()
        self._more.set()

    async def wait_line(self, pattern: str, start: int = 0) -> re.Match[str]:
        """The first log line from `start` on matching `pattern`, waiting for it."""
        async with asyncio.timeout(TIMEOUT):
            seen = start
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                assert not self._reader.done(), "server exited:\n" + "".join(self.lines)
                self._more.clear()
                await self._more.wait()

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> pid of its latest process that served."""
        found = {}
        for line in self.lines:
            if match := re.search(r"worker (\d+)/\d+ serving \(pid (\d+)\)", line):
                found[int(match.group(1))] = int(match.group(2))
        return found


@pytest.fixture
async def workers(fake_openai, tmp_path):
    env = dict(
        os.environ,
        WORKERS="2",
        DATABASE_URL="",  # the default: an embedded Postgres, started once by the parent
        DATA_DIR=str(tmp_path / "var"),
        GRPC_HOST="127.0.0.1",
        GRPC_PORT="0",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=fake_openai.base_url,
        VAD_STOP_MS="400",
        SHUTDOWN_GRACE_S="10",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the parent makes one for its workers
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    parent = Parent(proc)
    try:
        ready = await parent.wait_line(
            r"2 workers serving gRPC on port (\d+) and HTTP on port (\d+)"
        )
        parent.grpc = f"127.0.0.1:{ready.group(1)}"  # type: ignore[attr-defined]
        parent.http = f"http://127.0.0.1:{ready.group(2)}"  # type: ignore[attr-defined]
        yield parent
    finally:
        if proc.returncode is None:
            proc.kill()  # the workers see their parent gone and stop themselves
            await proc.wait()
        await asyncio.gather(parent._reader, return_exceptions=True)
        embedded = EmbeddedPostgres(tmp_path / "var")
        if postmaster_pid(embedded.pgdata):
            embedded.owned = True
            embedded.stop()


async def answering_workers(base: str, want: set[int], tries: int = 200) -> set[int]:
    """Which workers answer GET /health over fresh connections (the kernel picks one per
    connection), until all of `want` have answered or `tries` connections were made."""
    seen: set[int] = set()
    for _ in range(tries):
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:  # a new connection
            reply = await http.get("/health")
        assert reply.status_code == 200, reply.text
        seen.add(int(reply.headers[WORKER_HEADER]))
        if want <= seen:
            break
    return seen


async def grpc_turn(address: str, words: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        convo = Conversation(pb_grpc.VoiceAgentServiceStub(channel), config())
        await convo.until("session_started")
        convo.send(text(words))
        done = await convo.until("turn_completed")
        convo.close_input()
        await convo.rest()
    return done.turn_completed.agent_text


async def test_two_workers_serve_grpc_rest_websocket_and_webrtc(workers, fake_openai):
    pids = workers.worker_pids()
    assert len(set(pids.values())) == 2 and workers.proc.pid not in pids.values()
    assert await answering_workers(workers.http, {1, 2}) == {1, 2}

    assert await grpc_turn(workers.grpc, "I want a pizza") == "You said: I want a pizza."

    # REST: a session started on one worker continues on whichever worker the next
    # connection reaches (the conversation lives in the shared database).
    async with httpx.AsyncClient(base_url=workers.http, timeout=30) as http:
        started = await http.post("/conversation/start", json={"customer_id": "c1"})
        assert started.status_code == 200, started.text
        first_worker = int(started.headers[WORKER_HEADER])
        sid = started.json()["session_id"]
    for index in range(1, 200):
        async with httpx.AsyncClient(base_url=workers.http, timeout=30) as http:
            reply = await http.post(
                "/conversation/process", json={"session_id": sid, "text": f"Turn {index}"}
            )
        assert reply.status_code == 200, reply.text
        assert reply.json()["turn_index"] == index
        assert reply.json()["agent_response"] == f"You said: Turn {index}."
        if int(reply.headers[WORKER_HEADER]) != first_worker:
            break
    assert int(reply.headers[WORKER_HEADER]) != first_worker

    ws_url = workers.http.replace("http://", "ws://") + "/ws/voice-agent/ws-client"
    async with connect(ws_url) as socket:
        await socket.send(json.dumps({"type": "text_input", "text": "Hello there"}))
        async with asyncio.timeout(30):
            while (message := json.loads(await socket.recv()))["type"] != "conversation_response":
                pass
        assert message["text"] == "You said: Hello there."

    caller = Caller(workers.http)
    try:
        await caller.call(customer_id="webrtc-c")  # offer and answer: one request, one worker
        caller.send({"type": "text_input", "text": "Over WebRTC"})
        done = (await caller.wait_for("turn_completed", timeout=30))[0]
        assert done["agent_text"] == "You said: Over WebRTC."
        caller.send({"type": "hang_up"})
    finally:
        await caller.close()

    # /metrics on any worker counts every worker's sessions (PROMETHEUS_MULTIPROC_DIR).
    async with httpx.AsyncClient(base_url=workers.http, timeout=10) as http:
        body = (await http.get("/metrics")).text
    started_total = {
        edge: float(value)
        for edge, value in re.findall(
            r'^voiceagent_sessions_started_total\{edge="(\w+)"\} (\S+)', body, re.M
        )
    }
    assert started_total["grpc"] == 1 and started_total["websocket"] == 1
    assert started_total["webrtc"] == 1


async def draining_health(workers: Parent) -> tuple[int, str]:
    """GET /health over fresh connections until a worker answers that it is draining."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with httpx.AsyncClient(base_url=workers.http, timeout=10) as http:
                reply = await http.get("/health")
            if reply.status_code != 200:
                return reply.status_code, reply.json()["reason"]


async def draining_grpc_health(address: str) -> str:
    """gRPC health of a draining worker (one that has stopped already refuses: asked again)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            async with grpc.aio.insecure_channel(address) as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5
                    )
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    continue
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def test_a_killed_worker_is_restarted_and_sigterm_drains_every_worker(
    workers, fake_openai, tmp_path
):
    before = workers.worker_pids()
    mark = len(workers.lines)
    os.kill(before[1], signal.SIGKILL)
    match = await workers.wait_line(r"worker 1/2 serving \(pid (\d+)\)", mark)
    assert int(match.group(1)) != before[1]
    assert f"worker 1/2 (pid {before[1]}) died (killed by SIGKILL)" in "".join(workers.lines)
    assert await answering_workers(workers.http, {1, 2}) == {1, 2}  # both serve again
    assert await grpc_turn(workers.grpc, "Still here") == "You said: Still here."

    # A turn in flight when SIGTERM arrives finishes; the session is saved; exit 0.
    fake_openai.tts_ms_per_char = 40.0  # a reply of a few seconds, played at real-time pace
    async with grpc.aio.insecure_channel(workers.grpc) as channel:
        convo = Conversation(pb_grpc.VoiceAgentServiceStub(channel), config())
        started = await convo.until("session_started")
        convo.send(text("Tell me something long please, it takes a while to say"))
        await convo.until("agent_audio")
        workers.proc.send_signal(signal.SIGTERM)
        # While it drains, a load balancer is told to send new callers elsewhere.
        assert await draining_health(workers) == (503, "the server is shutting down")
        assert await draining_grpc_health(workers.grpc) == "NOT_SERVING"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await convo.rest()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()
        assert convo.of("turn_completed"), convo.kinds()  # the turn finished first
    assert await asyncio.wait_for(workers.proc.wait(), TIMEOUT) == 0
    await asyncio.gather(workers._reader, return_exceptions=True)
    log = "".join(workers.lines)
    assert "all workers stopped" in log and "still running" not in log
    assert postmaster_pid(tmp_path / "var" / "postgres") is None  # the parent stopped Postgres

    embedded = EmbeddedPostgres(tmp_path / "var")
    conn = await asyncpg.connect(await asyncio.to_thread(embedded.start))
    try:
        session_id = started.session_started.session_id
        row = await conn.fetchrow(
            "SELECT state, ended_at FROM conversation_sessions WHERE id = $1", session_id
        )
        roles = await conn.fetch(
            "SELECT role FROM turns WHERE session_id = $1 ORDER BY role", session_id
        )
    finally:
        await conn.close()
        await asyncio.to_thread(embedded.stop)
    # Saved and resumable (a shutdown is not the caller's hang-up): both halves of the turn.
    assert row["state"] == "disconnected" and row["ended_at"] is None
    assert [r["role"] for r in roles] == ["agent", "user"]


async def test_workers_stop_themselves_when_their_parent_is_killed(workers):
    pids = list(workers.worker_pids().values())
    workers.proc.kill()  # SIGKILL: the parent cannot forward anything
    await workers.proc.wait()
    async with asyncio.timeout(TIMEOUT):
        while running := [p for p in pids if (process_state(p) or ("", "Z"))[1] != "Z"]:
            await asyncio.sleep(0.05)  # polling /proc: the exit itself is not observable here
    assert not running
    await asyncio.wait_for(workers._reader, TIMEOUT)  # every writer of the log pipe is gone
    log = "".join(workers.lines)
    assert log.count("the parent process is gone; shutting down") == 2


@pytest.mark.parametrize("workers_env", ["1", "2"])
async def test_a_second_server_on_the_ports_fails_clearly_instead_of_sharing(
    workers, tmp_path, workers_env
):
    env = dict(
        os.environ,
        WORKERS=workers_env,
        DATABASE_URL="",
        DATA_DIR=str(tmp_path / "other"),
        GRPC_HOST="127.0.0.1",
        GRPC_PORT=workers.grpc.rsplit(":", 1)[1],
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        OPENAI_API_KEY="test-key",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 2, err.decode()
    assert f"cannot bind gRPC to 127.0.0.1:{workers.grpc.rsplit(':', 1)[1]}" in err.decode()
    assert postmaster_pid(tmp_path / "other" / "postgres") is None  # its Postgres stopped too
    assert await grpc_turn(workers.grpc, "Unshared") == "You said: Unshared."


def test_restart_delay_grows_for_a_worker_that_keeps_dying_and_resets_after_it_lived():
    policy = RestartPolicy(first_s=0.5, max_s=4.0, stable_s=30.0)
    assert [policy.delay(1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(60.0) == 0.0  # served a long while: at once, and the count starts over
    assert policy.delay(1.0) == 0.5


def test_default_worker_count_follows_a_container_cpu_limit(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs
    assert cores(cpu_max) == min(affinity, 2)
    cpu_max.write_text("max 100000\n")
    assert cores(cpu_max) == affinity
    assert cores(tmp_path / "missing") == affinity
