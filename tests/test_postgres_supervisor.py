"""The embedded Postgres killed mid-session comes back on its own; gRPC health and GET /health
follow the database on both surfaces; an external DATABASE_URL is reported, never restarted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.app import SERVICE_NAME, SESSION_SERVICE_NAME
from server.persistence.database import EmbeddedPostgres, postmaster_pid
from server.persistence.supervisor import clear_stale_locks, lock_files
from testing.converse_client import Conversation, config, text

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
WAIT = 20.0  # upper bound of any one wait below


async def eventually(condition, what: str, timeout: float = WAIT) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)  # polling period


class HealthWatch:
    """A gRPC health Watch on the whole server (""), read with a bound."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = health_pb2_grpc.HealthStub(channel)
        self.call = self.stub.Watch(health_pb2.HealthCheckRequest(service=""))

    async def next(self) -> int:
        reply = await asyncio.wait_for(self.call.read(), WAIT)
        assert reply is not grpc.aio.EOF
        return reply.status

    async def services(self) -> set[int]:
        """The status Check reports for each of the two services."""
        names = (SERVICE_NAME, SESSION_SERVICE_NAME)
        replies = [await self.stub.Check(health_pb2.HealthCheckRequest(service=n)) for n in names]
        return {r.status for r in replies}


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def checkpointer(postmaster: int) -> int:
    """A backend of `postmaster` that stays attached to its shared memory."""
    for child in children(postmaster):
        with contextlib.suppress(OSError):
            if b"checkpointer" in Path(f"/proc/{child}/cmdline").read_bytes():
                return child
    raise AssertionError("no checkpointer process")


def shm_id(pgdata: Path) -> str:
    """The System V shared memory block of a running Postgres, from its postmaster.pid."""
    return (pgdata / "postmaster.pid").read_text().splitlines()[6].split()[-1]


def shm_attached(shmid: str) -> int:
    """How many processes are attached to that shared memory block."""
    for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == shmid:
            return int(fields[6])
    return 0


async def test_sigkilled_embedded_postgres_restarts_and_health_follows(
    start_server, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="server.persistence.supervisor")
    agent = await start_server(database_url=None, data_dir=tmp_path, db_check_interval_s=0.1)
    server, db = agent.server, agent.server.db
    assert db.embedded is not None and db.embedded.owned and db.supervisor is not None
    pgdata = db.embedded.pgdata
    watch = HealthWatch(agent.channel)
    http = httpx.AsyncClient(base_url=agent.http_url, timeout=WAIT)
    try:
        assert await watch.next() == SERVING
        assert (await http.get("/health")).status_code == 200

        convo = Conversation(agent.stub, config(input_rate=None))
        convo.send(text("First turn"))
        await convo.until("turn_completed")
        assert await server.writer.flush(10)

        # SIGKILL the postmaster mid-session. One old backend is held stopped: it stays
        # attached to the shared memory, so Postgres refuses to start again until it is gone
        # (what a stuck orphan does after a real crash); that keeps the outage open for as
        # long as this test needs it, and exercises failed attempts and the backoff.
        pid = postmaster_pid(pgdata)
        assert pid is not None
        held, shmid = checkpointer(pid), shm_id(pgdata)
        os.kill(held, signal.SIGSTOP)
        try:
            os.kill(pid, signal.SIGKILL)
            assert await watch.next() == NOT_SERVING
            assert await watch.services() == {NOT_SERVING}
            down = await http.get("/health")
            assert down.status_code == 503, down.text
            assert "database is unreachable" in down.json()["reason"]
            # What this SIGKILL left behind: shared memory still in use by an old backend.
            assert postmaster_pid(pgdata) is None and shm_attached(shmid) >= 1
            await eventually(lambda: db.supervisor.failed_attempts >= 1, "a failed restart")
            assert "pre-existing shared memory block" in caplog.text

            for i in (2, 3):  # the conversation goes on while the database is down
                convo.send(text(f"Turn number {i}"))
                done = await convo.until("turn_completed", lambda t, i=i: t.turn_index == i)
                assert done.turn_completed.agent_text == f"You said: Turn number {i}."
            await eventually(lambda: not server.writer.connected, "the writer to notice")
            assert server.writer.pending > 0  # held, not written, not lost
            assert db.supervisor.restarts == 0
        finally:
            os.kill(held, signal.SIGCONT)  # it notices its postmaster is gone and exits

        # Back on its own: a new postmaster, SERVING on every name, /health 200.
        assert await watch.next() == SERVING
        assert await watch.services() == {SERVING}
        # (Postgres answers a moment before pg_ctl, in the supervisor's thread, returns.)
        await eventually(lambda: db.supervisor.restarts == 1, "the supervisor to finish")
        new_pid = postmaster_pid(pgdata)
        assert new_pid is not None and new_pid != pid
        assert (await http.get("/health")).status_code == 200
        assert "is not running; restarting it" in caplog.text
        assert "embedded Postgres restarted" in caplog.text

        # The held turns are written, each exactly once.
        assert await server.writer.flush(WAIT)
        assert await db.pool.fetchval("SELECT count(*) FROM turns") == 6  # 3 x (user, agent)
        assert await db.pool.fetchval(
            "SELECT count(*) FROM (SELECT DISTINCT session_id, turn_index, role FROM turns) t"
        ) == 6  # fmt: skip
        convo.close_input()
        await convo.rest()
    finally:
        watch.call.cancel()
        await http.aclose()

    # A deliberate stop is not fought: the supervisor stops first, Postgres stays down.
    supervisor = db.supervisor
    await server.stop()
    assert supervisor._task is not None and supervisor._task.done()
    assert postmaster_pid(pgdata) is None


async def test_external_database_is_reported_not_restarted(start_server, tmp_path):
    """DATABASE_URL (here a Postgres this test runs): health on both surfaces follows it."""
    pg = EmbeddedPostgres(tmp_path)
    url = await asyncio.to_thread(pg.start)
    try:
        agent = await start_server(database_url=url, db_check_interval_s=0.1)
        assert agent.server.db.supervisor is None
        watch = HealthWatch(agent.channel)
        async with httpx.AsyncClient(base_url=agent.http_url, timeout=WAIT) as http:
            assert await watch.next() == SERVING
            await asyncio.to_thread(pg.stop)
            assert await watch.next() == NOT_SERVING
            assert (await http.get("/health")).status_code == 503
            assert pg.pid() is None  # nobody started it again

            await asyncio.to_thread(pg.restart)
            assert await watch.next() == SERVING
            assert await watch.services() == {SERVING}
            assert (await http.get("/health")).status_code == 200
        watch.call.cancel()
        await agent.server.stop()
    finally:
        await asyncio.to_thread(pg.stop)


def test_stale_lock_files_are_cleared_only_when_their_pid_is_not_a_postmaster(tmp_path):
    """Postgres clears lock files naming no process itself; those naming a live process that
    is not this data directory's postmaster (a zombie, a reused pid) block it: removed."""
    embedded = EmbeddedPostgres(tmp_path)
    pgdata = embedded.pgdata
    pgdata.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    other = subprocess.Popen(["sleep", "60"])  # alive, and not a postmaster
    try:
        for pid, removed in ((gone.pid, False), (other.pid, True)):
            lines = [str(pid), str(pgdata), "1", "5432", str(pgdata), "", "1 2", "ready"]
            (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
            (pgdata / ".s.PGSQL.5432.lock").write_text(f"{pid}\n{pgdata}\n1\n5432\n")
            files = lock_files(pgdata)
            assert files == [pgdata / "postmaster.pid", pgdata / ".s.PGSQL.5432.lock"]
            clear_stale_locks(embedded, files)
            assert [f.exists() for f in files] == [not removed, not removed]
    finally:
        other.kill()
        other.wait()
