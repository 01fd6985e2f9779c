"""Persistence against a real Postgres: rows left by conversations, resume, paging, RPC errors."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest
from voiceagent.v1 import converse_pb2, sessions_pb2

from testing.converse_client import Conversation, config, speech_requests, text
from tests.test_barge_in import LONG_REPLY

AGENT, USER = sessions_pb2.TURN_ROLE_AGENT, sessions_pb2.TURN_ROLE_USER


async def turns_of(agent, session_id: str) -> list[sessions_pb2.Turn]:
    reply = await agent.sessions.ListTurns(sessions_pb2.ListTurnsRequest(session_id=session_id))
    return list(reply.turns)


async def test_spoken_conversation_with_barge_in_leaves_the_right_rows(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0
    fake_openai.transcripts.extend(["I want to order a pizza", "Stop please"])
    fake_openai.chat_replies.extend([LONG_REPLY, "Okay."])
    convo = Conversation(agent.stub, config(customer_id="customer123"))
    sid = (await convo.until("session_started")).session_started.session_id
    convo.send(*speech_requests("I want to order a pizza"))
    await convo.until("agent_audio")
    convo.send(*speech_requests("Stop please"))
    cut = (await convo.until("interrupted")).interrupted
    await convo.until("turn_completed", lambda t: t.turn_index == 2)
    convo.close_input()
    await convo.rest()

    turns = await turns_of(agent, sid)
    assert [(t.turn_index, t.role) for t in turns] == [(1, USER), (1, AGENT), (2, USER), (2, AGENT)]
    user1, agent1, _, agent2 = turns
    assert user1.text == "I want to order a pizza"
    assert 0 <= user1.start_offset_ms < user1.end_offset_ms
    assert agent1.text == LONG_REPLY and agent1.interrupted
    assert agent1.spoken_text == cut.spoken_text and agent1.audio_ms == cut.audio_sent_ms
    assert agent2.spoken_text == agent2.text == "Okay." and not agent2.interrupted
    assert agent2.latency.llm_first_token_ms >= 0 and agent2.latency.tts_first_byte_ms >= 0

    session = (
        await agent.sessions.GetSession(sessions_pb2.GetSessionRequest(session_id=sid))
    ).session
    assert session.customer_id == "customer123" and session.turn_count == 2
    assert session.state == converse_pb2.CONVERSATION_STATE_DISCONNECTED  # resumable


async def test_resume_in_a_new_server_loads_history_from_the_database(
    start_server, fake_openai, database_url
):
    first = await start_server()
    convo = Conversation(first.stub, config(input_rate=None, instructions="Be a pirate."))
    sid = (await convo.until("session_started")).session_started.session_id
    convo.send(text("My name is Ada"))
    await convo.until("turn_completed")
    convo.close_input()
    await convo.rest()
    await first.server.stop()  # flushes; the next server has nothing in memory

    second = await start_server()
    again = Conversation(second.stub, config(input_rate=None, session_id=sid))
    assert (await again.until("session_started")).session_started.resumed
    again.send(text("What is my name"))
    done = await again.until("turn_completed")
    assert done.turn_completed.turn_index == 2
    assert fake_openai.requests[-2].body["messages"] == [  # the chat request of turn 2
        {"role": "system", "content": "Be a pirate."},
        {"role": "user", "content": "My name is Ada"},
        {"role": "assistant", "content": "You said: My name is Ada."},
        {"role": "user", "content": "What is my name"},
    ]
    again.close_input()
    await again.rest()


async def test_list_sessions_pages_newest_first_and_filters_by_customer(agent):
    made = []
    for i in range(7):
        req = sessions_pb2.CreateSessionRequest(customer_id="alice", instructions=f"s{i}")
        made.append((await agent.sessions.CreateSession(req)).session.session_id)
    await agent.sessions.CreateSession(sessions_pb2.CreateSessionRequest(customer_id="bob"))

    seen, token, pages = [], "", 0
    while True:
        reply = await agent.sessions.ListSessions(
            sessions_pb2.ListSessionsRequest(customer_id="alice", page_size=3, page_token=token)
        )
        seen += [s.session_id for s in reply.sessions]
        pages, token = pages + 1, reply.next_page_token
        if not token:
            break
    assert pages == 3 and seen == made[::-1]
    everyone = await agent.sessions.ListSessions(sessions_pb2.ListSessionsRequest(page_size=1000))
    assert len(everyone.sessions) == 8 and not everyone.next_page_token  # 1000 clamped to 500


@pytest.mark.parametrize(
    "call,request_,code,message",
    [
        ("GetSession", sessions_pb2.GetSessionRequest(session_id=str(uuid.uuid4())), "NOT_FOUND", "not found"),
        ("GetSession", sessions_pb2.GetSessionRequest(session_id="nope"), "INVALID_ARGUMENT", "not a UUID"),
        ("ListTurns", sessions_pb2.ListTurnsRequest(session_id=str(uuid.uuid4())), "NOT_FOUND", "not found"),
        ("EndSession", sessions_pb2.EndSessionRequest(session_id=str(uuid.uuid4())), "NOT_FOUND", "not found"),
        ("ListSessions", sessions_pb2.ListSessionsRequest(page_size=-1), "INVALID_ARGUMENT", "page_size"),
        ("ListSessions", sessions_pb2.ListSessionsRequest(page_token="garbage!"), "INVALID_ARGUMENT", "page_token"),
        ("CreateSession", sessions_pb2.CreateSessionRequest(instructions="x\0y"), "INVALID_ARGUMENT", "NUL"),
        ("CreateSession", sessions_pb2.CreateSessionRequest(instructions="x" * 1_000_000), "OUT_OF_RANGE", "limit is 20000"),
    ],
)  # fmt: skip
async def test_session_rpc_bad_input(agent, call, request_, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(agent.sessions, call)(request_)
    assert info.value.code().name == code and message in info.value.details()


async def test_hostile_strings_are_stored_verbatim(agent, database_url):
    nasty = 'Robert\'); DROP TABLE customers;-- "quoted" ünïcode 🍕'
    created = await agent.sessions.CreateSession(
        sessions_pb2.CreateSessionRequest(customer_id=nasty, instructions=nasty)
    )
    got = await agent.sessions.GetSession(
        sessions_pb2.GetSessionRequest(session_id=created.session.session_id)
    )
    assert got.session.customer_id == nasty and got.session.instructions == nasty
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM customers") == 1
    finally:
        await conn.close()


async def test_end_session_hangs_up_a_live_stream(agent):
    convo = Conversation(agent.stub, config(input_rate=None))
    sid = (await convo.until("session_started")).session_started.session_id
    ended = await agent.sessions.EndSession(
        sessions_pb2.EndSessionRequest(session_id=sid, reason="agent_transfer")
    )
    assert ended.session.state == converse_pb2.CONVERSATION_STATE_ENDED
    assert ended.session.end_reason == "agent_transfer" and ended.session.HasField("end_time")
    rest = await convo.rest()
    assert rest[-1].state_changed.state == converse_pb2.CONVERSATION_STATE_ENDED
