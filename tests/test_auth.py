"""Authentication, tenants and limits on a real server and a real Postgres.

A matrix over every gRPC method and REST route: no credentials, a malformed key, a revoked
key, an expired token, a token for another session, a token without the verb, another
tenant's ids — each gets the right status and a message, and nothing is read or changed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

import grpc
import httpx
import jwt
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from voiceagent.v1 import (
    auth_pb2,
    auth_pb2_grpc,
    converse_pb2,
    sessions_pb2,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.auth import keys
from server.persistence.database import Database
from testing.converse_client import config, text
from tests.test_process import run

Request = converse_pb2.ConverseRequest


def bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


async def make_key(database_url: str, tenant: str, admin: bool = False) -> str:
    db = await Database.open(database_url, Path("."), pool_size=1)
    try:
        key, _ = await keys.create(db.pool, tenant, admin=admin)
        return key
    finally:
        await db.close()


@pytest.fixture
async def secured(start_server, database_url):
    """A server with authentication on: tenants acme and globex, one key each, an admin."""
    acme = await make_key(database_url, "acme")
    globex = await make_key(database_url, "globex")
    admin = await make_key(database_url, "ops", admin=True)
    agent = await start_server()
    assert agent.server.core.auth.enabled
    return agent, {"acme": acme, "globex": globex, "admin": admin}


async def converse(agent, metadata, *requests: Request) -> list[converse_pb2.ConverseResponse]:
    async def gen():
        for r in requests:
            yield r

    call = agent.stub.Converse(gen(), metadata=metadata, timeout=30)
    return [event async for event in call]


async def text_session(agent, key: str, words: str = "hello") -> str:
    events = await converse(
        agent,
        bearer(key),
        config(None),
        text(words),
        Request(
            control=converse_pb2.Control(action=converse_pb2.CONTROL_ACTION_END_OF_INPUT)
        ),  # fmt: skip
    )
    assert any(e.WhichOneof("event") == "turn_completed" for e in events)
    return events[0].session_started.session_id


def http(agent, credential: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    return httpx.AsyncClient(base_url=agent.http_url, headers=headers, timeout=30)


async def test_keys_cli_creates_lists_and_revokes_without_a_running_server(database_url):
    env = {"DATABASE_URL": database_url}
    code, out, err = await run(sys.executable, "-m", "server.keys", "create", "--tenant", "acme",
                               "--name", "backend", env=env)  # fmt: skip
    assert code == 0, err
    key = out.strip().splitlines()[-1].split()[-1]
    key_id, _ = keys.parse(key)
    code, out, _ = await run(sys.executable, "-m", "server.keys", "list", env=env)
    assert code == 0 and key_id in out and "acme" in out and "active" in out
    assert key.split("_")[-1] not in out  # the secret is never shown again
    code, out, _ = await run(sys.executable, "-m", "server.keys", "revoke", key_id, env=env)
    assert code == 0 and "revoked" in out
    code, out, _ = await run(sys.executable, "-m", "server.keys", "list", env=env)
    assert "revoked" in out
    code, _, err = await run(sys.executable, "-m", "server.keys", "create", "--tenant", "Bad Name!",
                             env=env)  # fmt: skip
    assert code == 2 and "tenant id" in err


GRPC_CALLS = {
    "Converse": lambda a, md: converse(a, md, config(None), text("hi")),
    "Synthesize": lambda a, md: a.stub.Synthesize(
        converse_pb2.SynthesizeRequest(text="hi")
        if hasattr(converse_pb2, "SynthesizeRequest")
        else __import__("voiceagent.v1.voice_agent_service_pb2", fromlist=["x"]).SynthesizeRequest(
            text="hi"
        ),
        metadata=md,
    ).read(),  # fmt: skip
    "CreateSession": lambda a, md: a.sessions.CreateSession(
        sessions_pb2.CreateSessionRequest(customer_id="c"), metadata=md
    ),
    "ListSessions": lambda a, md: a.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(), metadata=md
    ),
    "GetSession": lambda a, md: a.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=str(uuid.uuid4())), metadata=md
    ),
    "EndSession": lambda a, md: a.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=str(uuid.uuid4())), metadata=md
    ),
    "ListTurns": lambda a, md: a.sessions.ListTurns(
        sessions_pb2.ListTurnsRequest(session_id=str(uuid.uuid4())), metadata=md
    ),
    "CreateClientToken": lambda a, md: auth_pb2_grpc.AuthServiceStub(a.channel).CreateClientToken(
        auth_pb2.CreateClientTokenRequest(), metadata=md
    ),
}


@pytest.mark.parametrize("credential", ["none", "malformed", "unknown", "revoked", "expired"])
async def test_every_grpc_method_refuses_bad_credentials(secured, database_url, credential):
    agent, k = secured
    secret = agent.server.core.auth.secret
    key_id, _ = keys.parse(k["globex"])
    values = {
        "none": (),
        "malformed": bearer("not-a-key"),
        "unknown": bearer(f"vak_{'0' * 12}_{'A' * 43}"),
        "revoked": bearer(k["globex"]),
        "expired": bearer(jwt.encode({"iss": "voiceagent", "sub": "acme", "kid": key_id,
                                      "scope": "converse read", "iat": 1, "exp": 2}, secret)),
    }  # fmt: skip
    if credential == "revoked":
        async with http(agent, k["admin"]) as client:
            assert (await client.delete(f"/v1/keys/{key_id}")).status_code == 200
    for name, call in GRPC_CALLS.items():
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(agent, values[credential])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, name
        assert info.value.details(), name
        if credential == "none":
            assert "authorization: Bearer" in info.value.details()
        assert k["globex"].split("_")[-1] not in info.value.details()  # never echo a secret
    assert len(agent.server.live) == 0


async def test_health_and_reflection_stay_open(secured):
    agent, _ = secured
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = await health_pb2_grpc.HealthStub(agent.channel).Check(health_pb2.HealthCheckRequest())
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with http(agent) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


REST_ROUTES = [
    ("post", "/conversation/start", {"json": {"customer_id": "c"}}),
    ("post", "/conversation/process", {"json": {"session_id": "s1", "text": "hi"}}),
    ("post", "/voice/text-to-speech", {"json": {"text": "hi"}}),
    ("get", "/sessions", {}),
    ("get", "/sessions/s1", {}),
    ("get", "/sessions/s1/turns", {}),
    ("get", "/ws/status", {}),
    ("post", "/ws/disconnect/s1", {}),
    ("get", "/webrtc/calls", {}),
    ("get", "/webrtc/config", {}),
    ("post", "/webrtc/offer", {"json": {"sdp": "v=0"}}),
    ("delete", "/webrtc/calls/abc", {}),
    ("post", "/v1/client-tokens", {"json": {}}),
    ("get", "/v1/keys", {}),
]


@pytest.mark.parametrize("credential", [None, "not-a-key", "vak_000000000000_" + "A" * 43])
async def test_every_rest_route_refuses_bad_credentials(secured, credential):
    agent, _ = secured
    async with http(agent, credential) as client:
        for method, path, kw in REST_ROUTES:
            reply = await client.request(method, path, **kw)
            assert reply.status_code == 401, (path, reply.text)
            assert reply.headers["www-authenticate"] == "Bearer"
            assert "detail" in reply.json()


async def test_tenants_are_isolated_on_every_surface(secured):
    agent, k = secured
    mine = await text_session(agent, k["acme"], "my secret order")
    # globex sees nothing of acme's: not in lists, NOT_FOUND / 404 by id, no hang-up.
    listed = await agent.sessions.ListSessions(
        sessions_pb2.ListSessionsRequest(), metadata=bearer(k["globex"])
    )
    assert mine not in [s.session_id for s in listed.sessions]
    for call in (
        agent.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=mine),
                                  metadata=bearer(k["globex"])),
        agent.sessions.ListTurns(sessions_pb2.ListTurnsRequest(session_id=mine),
                                 metadata=bearer(k["globex"])),
        agent.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id=mine),
                                  metadata=bearer(k["globex"])),
    ):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "secret order" not in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:  # resuming it is not possible either
        await converse(agent, bearer(k["globex"]), config(None, session_id=mine), text("hi"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    async with http(agent, k["globex"]) as client:
        assert (await client.get(f"/sessions/{mine}")).status_code == 404
        assert (await client.get(f"/sessions/{mine}/turns")).status_code == 404
        body = (await client.get("/sessions")).json()
        assert mine not in [s["session_id"] for s in body["sessions"]]
        reply = await client.post("/conversation/process", json={"session_id": mine, "text": "x"})
        assert reply.status_code == 404
    # acme still has its session untouched, with its turn.
    async with http(agent, k["acme"]) as client:
        got = (await client.get(f"/sessions/{mine}")).json()
        assert got["turn_count"] == 1 and got["ended_at"] is None
        turns = (await client.get(f"/sessions/{mine}/turns")).json()["turns"]
        assert turns[0]["text"] == "my secret order"


async def test_websocket_ids_are_per_tenant_and_need_credentials(secured):
    agent, k = secured
    base = agent.http_url.replace("http://", "ws://")
    async with connect(f"{base}/ws/voice-agent/shared") as sock:  # no credentials
        first = await sock.recv()
        assert "unauthenticated" in first
        with pytest.raises(ConnectionClosed) as info:
            await sock.recv()
        assert info.value.rcvd.code == 1008
    async with connect(f"{base}/ws/voice-agent/shared?token={k['acme']}") as sock:
        assert "not accepted in URLs" in await sock.recv()  # a key never goes in a URL
    started = {}
    for tenant in ("acme", "globex"):
        headers = {"Authorization": f"Bearer {k[tenant]}"}
        async with connect(f"{base}/ws/voice-agent/shared", additional_headers=headers) as sock:
            started[tenant] = json.loads(await sock.recv())["session_id"]
    assert started["acme"] != started["globex"]


async def test_client_tokens_scope_tenant_session_and_verbs(secured):
    agent, k = secured
    mine = await text_session(agent, k["acme"])
    other = await text_session(agent, k["acme"])
    async with http(agent, k["acme"]) as client:
        reply = await client.post(
            "/v1/client-tokens", json={"session_id": mine, "verbs": ["converse"], "ttl_s": 60}
        )
        assert reply.status_code == 200
        minted = reply.json()
        assert minted["tenant_id"] == "acme" and minted["session_id"] == mine
        read_only = (await client.post("/v1/client-tokens", json={"verbs": ["read"]})).json()
        bad = await client.post("/v1/client-tokens", json={"ttl_s": 7201})
        assert bad.status_code == 422
    token = minted["token"]
    # The token converses on its session ...
    events = await converse(agent, bearer(token), config(None, session_id=mine), text("again"))
    assert events[0].session_started.resumed
    # ... but not on another one (403), nor reads (no verb), nor mints more tokens.
    for call in (
        converse(agent, bearer(token), config(None, session_id=other), text("x")),
        converse(agent, bearer(token), config(None), text("a new session")),
        agent.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=mine),
                                  metadata=bearer(token)),
        auth_pb2_grpc.AuthServiceStub(agent.channel).CreateClientToken(
            auth_pb2.CreateClientTokenRequest(), metadata=bearer(token)),
    ):  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
    async with http(agent, read_only["token"]) as client:
        assert (await client.get(f"/sessions/{mine}")).status_code == 200
        reply = await client.post("/conversation/process", json={"session_id": mine, "text": "x"})
        assert reply.status_code == 403 and "converse" in reply.json()["detail"]
    # A browser passes the token in the WebSocket URL.
    base = agent.http_url.replace("http://", "ws://")
    async with connect(f"{base}/ws/voice-agent/{mine}?token={token}") as sock:
        assert '"session_started"' in await sock.recv()
    # Revoking the key that minted it revokes the token at once.
    async with http(agent, k["admin"]) as client:
        key_id, _ = keys.parse(k["acme"])
        assert (await client.delete(f"/v1/keys/{key_id}")).status_code == 200
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await converse(agent, bearer(token), config(None, session_id=mine), text("x"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_admin_api_needs_an_admin_key(secured):
    agent, k = secured
    async with http(agent, k["acme"]) as client:
        assert (await client.get("/v1/keys")).status_code == 403
    async with http(agent, k["admin"]) as client:
        created = await client.post("/v1/keys", json={"tenant_id": "initech", "name": "new"})
        assert created.status_code == 200
        new = created.json()
        listed = (await client.get("/v1/keys")).json()["keys"]
    assert new["id"] in [x["id"] for x in listed]
    assert all("key" not in x and "secret" not in str(x) for x in listed)
    assert new["key"].split("_")[-1] not in str(listed)
    async with http(agent, new["key"]) as client:
        assert (await client.get("/sessions")).status_code == 200


async def test_the_n_plus_first_live_session_is_refused_with_retry_info(start_server, database_url):
    key = await make_key(database_url, "acme")
    agent = await start_server(tenant_max_sessions=2)
    outbox: list[asyncio.Queue] = []
    calls = []
    for _ in range(2):
        queue: asyncio.Queue = asyncio.Queue()
        queue.put_nowait(config(None))

        async def gen(q=queue):
            while (r := await q.get()) is not None:
                yield r

        call = agent.stub.Converse(gen(), metadata=bearer(key))
        assert (await call.read()).WhichOneof("event") == "session_started"
        outbox.append(queue)
        calls.append(call)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await converse(agent, bearer(key), config(None), text("one too many"))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 2 live sessions" in info.value.details()
    status = rpc_status.from_call(info.value)
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry) and retry.retry_delay.seconds >= 1
    async with http(agent, key) as client:
        reply = await client.post("/conversation/process", json={"session_id": "x1", "text": "x"})
        assert reply.status_code in (404, 429)  # x1 does not exist: 404 before the limit
        started = (await client.post("/conversation/start", json={"customer_id": "c"})).json()
        reply = await client.post(
            "/conversation/process", json={"session_id": started["session_id"], "text": "x"}
        )
        assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1
    # The first two keep talking.
    for queue, call in zip(outbox, calls, strict=True):
        queue.put_nowait(text("still here"))
        while (await call.read()).WhichOneof("event") != "turn_completed":
            pass
        queue.put_nowait(None)
        while await call.read() is not grpc.aio.EOF:
            pass
        assert await call.code() == grpc.StatusCode.OK


async def test_the_duration_cap_warns_then_ends_the_session_with_its_turns_saved(
    start_server, database_url
):
    key = await make_key(database_url, "acme")
    agent = await start_server(max_session_duration_s=3.0, session_expiry_warning_s=2.0)
    queue: asyncio.Queue = asyncio.Queue()
    queue.put_nowait(config(None))
    queue.put_nowait(text("a turn before the cut"))

    async def gen():
        while (r := await queue.get()) is not None:
            yield r

    call = agent.stub.Converse(gen(), metadata=bearer(key))
    kinds = []
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for event in call:
            kinds.append(event.WhichOneof("event"))
            if kinds[-1] == "session_started":
                sid = event.session_started.session_id
            if kinds[-1] == "session_expiring":
                assert event.session_expiring.seconds_left == 2
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "maximum duration" in info.value.details()
    assert "turn_completed" in kinds and "session_expiring" in kinds
    assert kinds.index("session_expiring") < len(kinds)
    assert time.monotonic() - started < 15
    got = await agent.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=sid), metadata=bearer(key)
    )
    assert got.session.end_reason == "max_duration" and got.session.turn_count == 1


async def test_an_open_server_refuses_to_bind_other_interfaces(start_server):
    from server.binding import UnsafeBind

    with pytest.raises(UnsafeBind, match="ALLOW_UNAUTHENTICATED"):
        await start_server(http_host="0.0.0.0")


def test_bind_rule():
    from server.binding import UnsafeBind, hosts

    assert hosts(None, None, auth_on=False, allow_unauthenticated=False) == (
        "127.0.0.1",
        "127.0.0.1",
    )
    assert hosts(None, None, auth_on=True, allow_unauthenticated=False) == ("[::]", "0.0.0.0")
    assert hosts("[::1]", "localhost", auth_on=False, allow_unauthenticated=False)
    with pytest.raises(UnsafeBind):
        hosts("[::]", None, auth_on=False, allow_unauthenticated=False)
    assert hosts("[::]", None, auth_on=False, allow_unauthenticated=True)[0] == "[::]"


async def test_secrets_never_reach_the_logs(secured, caplog):
    agent, k = secured
    caplog.set_level("DEBUG")
    secret = k["acme"].split("_")[-1]
    await text_session(agent, k["acme"])
    async with http(agent, k["acme"]) as client:
        token = (await client.post("/v1/client-tokens", json={})).json()["token"]
        await client.get("/sessions")
    with pytest.raises(grpc.aio.AioRpcError):
        await converse(
            agent, bearer(k["acme"][:-1] + ("x" if k["acme"][-1] != "x" else "y")), config(None)
        )
    base = agent.http_url.replace("http://", "ws://")
    async with connect(f"{base}/ws/voice-agent/x?token={token}") as sock:
        await sock.recv()
    # What the server logged (the test's own clients log their requests: not the server's).
    server_lines = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(("websockets.client",
                                                                            "httpx", "httpcore"))
    )  # fmt: skip
    assert "/ws/voice-agent/x" in caplog.text  # the lines are there, just without secrets
    assert secret not in server_lines and token not in server_lines
