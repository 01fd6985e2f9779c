"""Conversations and stored sessions over REST: start, typed turns with history, the same
session from gRPC, and the /sessions reads with paging."""

from __future__ import annotations

import uuid

import httpx
from voiceagent.v1 import sessions_pb2

from server.sessions.ids import CLIENT_ID_NAMESPACE
from testing.converse_client import Conversation, config, text


def client(agent) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=agent.http_url, timeout=30)


async def test_start_creates_a_stored_session_and_its_customer(agent, database_url):
    async with client(agent) as http:
        reply = await http.post("/conversation/start", json={"customer_id": "customer123"})
        assert reply.status_code == 200, reply.text
        started = reply.json()
        assert started["customer_id"] == "customer123" and started["state"] == "started"
        assert started["greeting"] and uuid.UUID(started["session_id"])
        stored = (await http.get(f"/sessions/{started['session_id']}")).json()
    assert stored["customer_id"] == "customer123" and stored["turn_count"] == 0
    assert stored["state"] == "started" and not stored["live"]
    got = await agent.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=started["session_id"])
    )
    assert got.session.customer_id == "customer123"  # one session, every API


async def test_process_keeps_history_and_accepts_user_input_alias(agent, fake_openai):
    async with client(agent) as http:
        sid = (
            await http.post(
                "/conversation/start",
                json={"customer_id": "c1", "instructions": "Be brief.", "voice": "nova"},
            )
        ).json()["session_id"]
        first = await http.post(
            "/conversation/process", json={"session_id": sid, "text": "My name is Ada"}
        )
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["agent_response"] == "You said: My name is Ada."
        assert body["user_input"] == "My name is Ada" and body["turn_index"] == 1
        assert body["state"] == "disconnected" and body["audio_base64"] is None
        assert fake_openai.calls["speech"] == 0  # no audio asked for: none synthesized
        assert body["audio_duration_ms"] == 0
        second = await http.post(
            "/conversation/process",
            json={"session_id": sid, "user_input": "What is my name", "include_audio": True},
        )
        assert second.status_code == 200, second.text
        assert second.json()["turn_index"] == 2 and second.json()["audio_format"] == "mp3"
    chat = [r for r in fake_openai.requests if r.endpoint == "chat"][-1]
    assert chat.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "You said: My name is Ada."},
        {"role": "user", "content": "What is my name"},
    ]
    speech = [r for r in fake_openai.requests if r.endpoint == "speech"][-1]
    assert speech.body["voice"] == "nova"  # the session's voice


async def test_a_rest_session_continues_over_grpc(agent):
    async with client(agent) as http:
        sid = (await http.post("/conversation/start", json={"customer_id": "c2"})).json()[
            "session_id"
        ]
        await http.post("/conversation/process", json={"session_id": sid, "text": "Hello"})
    convo = Conversation(agent.stub, config(input_rate=None, session_id=sid))
    assert (await convo.until("session_started")).session_started.resumed
    convo.send(text("Again"))
    assert (await convo.until("turn_completed")).turn_completed.turn_index == 2
    convo.close_input()
    await convo.rest()


async def test_ended_session_is_409_unknown_is_404(agent):
    async with client(agent) as http:
        sid = (await http.post("/conversation/start", json={"customer_id": "c3"})).json()[
            "session_id"
        ]
        await agent.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id=sid))
        ended = await http.post("/conversation/process", json={"session_id": sid, "text": "Hi"})
        assert ended.status_code == 409 and "has ended" in ended.json()["detail"]
        unknown = str(uuid.uuid4())
        for reply in (
            await http.post("/conversation/process", json={"session_id": unknown, "text": "Hi"}),
            await http.get(f"/sessions/{unknown}"),
            await http.get(f"/sessions/{unknown}/turns"),
            await http.get("/sessions/not-a-uuid-nor-known"),
        ):
            assert reply.status_code == 404 and "not found" in reply.json()["detail"]


async def test_sessions_page_newest_first_and_filter_by_customer(agent):
    async with client(agent) as http:
        made = []
        for _ in range(5):
            reply = await http.post("/conversation/start", json={"customer_id": "alice"})
            made.append(reply.json()["session_id"])
        await http.post("/conversation/start", json={"customer_id": "bob"})
        seen, token, pages = [], "", 0
        while True:
            params = {"customer_id": "alice", "page_size": 2} | (
                {"page_token": token} if token else {}
            )
            page = (await http.get("/sessions", params=params)).json()
            seen += [s["session_id"] for s in page["sessions"]]
            pages, token = pages + 1, page["next_page_token"]
            if not token:
                break
        assert pages == 3 and seen == made[::-1]
        everyone = (await http.get("/sessions")).json()
        assert len(everyone["sessions"]) == 6 and not everyone["next_page_token"]
        bad = await http.get("/sessions", params={"page_token": "garbage!"})
        assert bad.status_code == 400 and "page_token" in bad.json()["detail"]
        too_big = await http.get("/sessions", params={"page_size": 501})
        assert too_big.status_code == 422


async def test_turns_page_and_client_chosen_ids_map_to_uuid5(agent):
    async with client(agent) as http:
        sid = (await http.post("/conversation/start", json={"customer_id": "c4"})).json()[
            "session_id"
        ]
        for words in ("one", "two"):
            await http.post("/conversation/process", json={"session_id": sid, "text": words})
        page = (await http.get(f"/sessions/{sid}/turns", params={"page_size": 3})).json()
        assert [(t["turn_index"], t["role"]) for t in page["turns"]] == [
            (1, "user"),
            (1, "agent"),
            (2, "user"),
        ]
        rest = (
            await http.get(f"/sessions/{sid}/turns", params={"page_token": page["next_page_token"]})
        ).json()
        assert [(t["turn_index"], t["role"]) for t in rest["turns"]] == [(2, "agent")]
        assert rest["turns"][0]["latency"]["llm_first_token_ms"] >= 0
    assert str(uuid.uuid5(CLIENT_ID_NAMESPACE, "session123")) == str(
        uuid.uuid5(uuid.UUID("6f1c5d2e-4b7a-5c39-9e0d-8a2b3c4d5e6f"), "session123")
    )  # the documented namespace
