"""Two replicas (two `python -m server` processes on loopback, one Postgres) behave as one
server: the control plane (server/cluster, docs/cluster.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time

import asyncpg
import grpc
import httpx
import pytest
from voiceagent.v1 import converse_pb2, sessions_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.cluster.leases import Counts, refusal
from server.persistence.database import EmbeddedPostgres
from server.sessions.errors import Kind
from server.sessions.limits import TenantLimits
from testing.cluster import Replica, start_replica
from testing.converse_client import Conversation, config, text
from testing.settings import test_settings

LEASE_S = 2.0
WAIT_S = 15.0  # upper bound for a condition to show; a hang fails instead of blocking


@pytest.fixture
async def cluster_env(fake_openai, database_url) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "VAD_STOP_MS": "400",
        "CLUSTER_LEASE_S": str(LEASE_S),
        "CLUSTER_HEARTBEAT_S": "0.4",
    }


async def two(env: dict[str, str]) -> tuple[Replica, Replica]:
    a, b = await asyncio.gather(start_replica("replica-a", env), start_replica("replica-b", env))
    return a, b


@pytest.fixture
async def replicas(cluster_env):
    a, b = await two(cluster_env)
    try:
        yield a, b
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def until(check, what: str, timeout: float = WAIT_S):
    """Poll `check()` (an async observation) until it is truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)  # polling interval of an observation, not synchronisation


async def started(replica: Replica, **fields) -> tuple[Conversation, str]:
    convo = Conversation(replica.stub, config(input_rate=None, **fields))
    event = await convo.until("session_started")
    return convo, event.session_started.session_id


async def refused(replica: Replica, **fields) -> grpc.aio.AioRpcError:
    convo = Conversation(replica.stub, config(input_rate=None, **fields))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await convo.until("session_started")
    convo.close_input()
    return info.value


async def test_end_session_sent_to_b_ends_the_stream_on_a(replicas):
    a, b = replicas
    convo, sid = await started(a)
    # A second stream on the session, on the other replica: the same refusal as on one server.
    busy = await refused(b, session_id=sid)
    assert busy.code() == grpc.StatusCode.FAILED_PRECONDITION and "busy" in busy.details()

    ended = await b.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=sid, reason="agent_transfer")
    )
    assert ended.session.state == converse_pb2.CONVERSATION_STATE_ENDED
    assert ended.session.end_reason == "agent_transfer"
    rest = await convo.rest()  # the stream on A ends
    assert rest[-1].state_changed.state == converse_pb2.CONVERSATION_STATE_ENDED
    got = await a.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=sid))
    assert got.session.end_reason == "agent_transfer"


async def test_ws_status_on_either_replica_lists_both_and_disconnect_reaches_the_owner(replicas):
    a, b = replicas
    async with (
        connect(f"{a.ws_url}/ws/voice-agent/alpha") as on_a,
        connect(f"{b.ws_url}/ws/voice-agent/beta") as on_b,
    ):
        for socket in (on_a, on_b):
            assert json.loads(await socket.recv())["type"] == "session_started"
        async with httpx.AsyncClient(timeout=10) as http:

            async def both_listed(replica: Replica):
                body = (await http.get(f"{replica.http_url}/ws/status")).json()
                ids = {c["client_session_id"]: c["server"] for c in body["connections"]}
                return body if ids == {"alpha": "replica-a", "beta": "replica-b"} else None

            for replica in (a, b):
                body = await until(lambda r=replica: both_listed(r), f"both on {replica.name}")
                assert body["active_connections"] == 2

            # Cluster-wide live flags on stored sessions.
            row = (await http.get(f"{b.http_url}/sessions/alpha")).json()
            assert row["live"] is True

            # Disconnect sent to B closes the socket on A; the session stays resumable.
            reply = await http.post(f"{b.http_url}/ws/disconnect/alpha")
            assert reply.status_code == 200, reply.text
            with pytest.raises(ConnectionClosed):
                while True:
                    await on_a.recv()
            assert on_a.close_code == 1000
            missing = await http.post(f"{a.http_url}/ws/disconnect/nobody")
            assert missing.status_code == 404

            async def not_live():
                return not (await http.get(f"{b.http_url}/sessions/alpha")).json()["live"]

            await until(not_live, "alpha no longer live")
    async with connect(f"{b.ws_url}/ws/voice-agent/alpha") as again:  # resumes on B
        assert json.loads(await again.recv())["resumed"] is True


async def test_the_global_limit_holds_with_streams_split_over_both_replicas(cluster_env):
    a, b = await two({**cluster_env, "MAX_SESSIONS": "2"})
    try:
        on_a, _ = await started(a)
        on_b, sid_b = await started(b)
        for replica in (a, b):  # each process has one stream: the cluster has two
            full = await refused(replica)
            assert full.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "limit of 2 live sessions" in full.details()
        on_b.close_input()
        await on_b.rest()

        async with httpx.AsyncClient(timeout=10) as http:

            async def freed():
                return not (await http.get(f"{a.http_url}/sessions/{sid_b}")).json()["live"]

            await until(freed, "B's slot to be freed")
        again, _ = await started(a)  # the slot B freed is usable on A
        for convo in (on_a, again):
            convo.close_input()
            await convo.rest()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_kill_9_owner_session_resumable_on_b_within_the_lease_with_its_turns(replicas):
    a, b = replicas
    # The session starts on B (so B has it cached), then moves to A.
    first, sid = await started(b)
    first.send(text("one pizza"))
    await first.until("turn_completed")
    first.close_input()
    await first.rest()
    async with httpx.AsyncClient(timeout=10) as http:

        async def not_live():
            return not (await http.get(f"{a.http_url}/sessions/{sid}")).json()["live"]

        await until(not_live, "B's stream to be released")
    convo, _ = await started(a, session_id=sid)
    convo.send(text("two pizzas"))
    await convo.until("turn_completed")
    a.kill()
    killed = time.monotonic()

    async def resumed():
        try:
            return await started(b, session_id=sid)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            return None  # still A's until its lease expires

    on_b, _ = await until(resumed, "the session to be resumable on B", LEASE_S + WAIT_S)
    assert time.monotonic() - killed < LEASE_S + 2.0  # the lease time, plus a beat of slack
    assert on_b.of("session_started")[0].resumed
    on_b.send(text("three pizzas"))
    done = (await on_b.until("turn_completed")).turn_completed
    assert done.turn_index == 3  # both finished turns were saved before A died
    turns = await b.sessions.ListTurns(sessions_pb2.ListTurnsRequest(session_id=sid))
    said = [t.text for t in turns.turns if t.role == sessions_pb2.TURN_ROLE_USER]
    assert said == ["one pizza", "two pizzas", "three pizzas"]
    on_b.close_input()
    await on_b.rest()


def counts(**kw) -> Counts:
    values = dict(holder=None, live=0, tenant_live=0, tenant_starts=0, oldest_start_age_s=0.0)
    return Counts(**{**values, **kw})


LIMITS = TenantLimits(max_sessions=2, starts_per_minute=3, max_session_s=60)


@pytest.mark.parametrize(
    "seen,tenant,kind,message",
    [
        (counts(), LIMITS, None, ""),
        (counts(holder="me"), LIMITS, None, ""),  # its own lease (taken again): fine
        (counts(holder="other"), None, Kind.CONFLICT, "busy"),
        (counts(live=5), None, Kind.EXHAUSTED, "limit of 5 live sessions"),
        (counts(live=4, tenant_live=2), LIMITS, Kind.RATE_LIMITED, "limit of 2 live"),
        (counts(live=4, tenant_live=2), None, None, ""),  # unauthenticated: MAX_SESSIONS only
        (counts(tenant_starts=3, oldest_start_age_s=45), LIMITS, Kind.RATE_LIMITED, "retry in 15"),
    ],
)  # fmt: skip
def test_admission_decision(seen, tenant, kind, message):
    got = refusal(seen, session_id="s", tenant_id="t", owner_id="me", max_sessions=5, tenant=tenant)
    if kind is None:
        assert got is None
    else:
        assert got is not None and got.kind == kind and message in str(got)


class Authorized:
    """A VoiceAgentService stub whose calls carry an API key."""

    def __init__(self, replica: Replica, key: str) -> None:
        self.stub, self.metadata = replica.stub, (("authorization", f"Bearer {key}"),)

    def Converse(self, requests):  # noqa: N802 - the RPC's name
        return self.stub.Converse(requests, metadata=self.metadata)


async def test_tenant_limits_hold_across_replicas(cluster_env):
    env = {**cluster_env, "TENANT_MAX_SESSIONS": "1", "TENANT_STARTS_PER_MINUTE": "3"}
    created = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.keys", "create", "--tenant", "acme",
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(created.communicate(), 60)
    assert created.returncode == 0
    key = out.decode().split()[-1]
    a, b = await two(env)
    try:
        on = {r.name: Authorized(r, key) for r in (a, b)}
        headers = {"Authorization": f"Bearer {key}"}

        async def one_live_then_end(first: str, second: str) -> None:
            convo = Conversation(on[first], config(input_rate=None))
            sid = (await convo.until("session_started")).session_started.session_id
            other = Conversation(on[second], config(input_rate=None))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await other.until("session_started")
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "tenant 'acme' is at its limit of 1 live sessions" in info.value.details()
            convo.close_input()
            await convo.rest()
            async with httpx.AsyncClient(timeout=10, headers=headers) as http:

                async def freed():
                    got = await http.get(f"{a.http_url}/sessions/{sid}")
                    return not got.json()["live"]

                await until(freed, "the tenant's session to end")

        await one_live_then_end("replica-a", "replica-b")  # start 1
        await one_live_then_end("replica-b", "replica-a")  # start 2
        await one_live_then_end("replica-a", "replica-b")  # start 3
        # The refused attempts were not starts; a fourth start in the minute is refused.
        fourth = Conversation(on["replica-b"], config(input_rate=None))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await fourth.until("session_started")
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "may start 3 sessions per minute" in info.value.details()
    finally:
        await asyncio.gather(a.stop(), b.stop())


async def test_database_down_streams_still_open_and_take_their_lease_when_it_is_back(
    start_server, tmp_path
):
    """Degraded mode: one process's view while the database is down, leases claimed after."""
    pg = EmbeddedPostgres(tmp_path)
    url = await asyncio.to_thread(pg.start)
    try:
        agent = await start_server(
            database_url=url, cluster_lease_s=LEASE_S, cluster_heartbeat_s=0.2
        )
        core = agent.server.core
        await asyncio.to_thread(pg.stop)
        assert not await core.db_health.check()
        convo = Conversation(agent.stub, config(input_rate=None))
        convo.send(text("Hello while the database is down"))
        done = await convo.until("turn_completed")
        sid = convo.of("session_started")[0].session_id
        assert done.turn_completed.agent_text == "You said: Hello while the database is down."

        await asyncio.to_thread(pg.restart)

        async def leased():
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                conn = await asyncpg.connect(url)
                try:
                    return await conn.fetchval(
                        "SELECT owner_id FROM session_leases WHERE session_id = $1", sid
                    )
                finally:
                    await conn.close()
            return None

        assert await until(leased, "the heartbeat to claim the lease") == core.cluster.owner_id
        convo.close_input()
        await convo.rest()
        await agent.server.stop()
    finally:
        await asyncio.to_thread(pg.stop)


def test_a_heartbeat_not_shorter_than_the_lease_is_refused_at_start_up():
    with pytest.raises(
        ValueError, match="CLUSTER_HEARTBEAT_S must be shorter than CLUSTER_LEASE_S"
    ):
        test_settings(None, cluster_lease_s=2.0, cluster_heartbeat_s=2.0)
