"""Faults in the middle of a conversation: no turn is lost and no session is stuck.

- Every provider (STT, chat, TTS) x every fault the fake injects (429, 500, stall, drop, drop
  mid-stream), on one live stream, one after another: a recoverable fault is retried and
  invisible; one that outlasts the retry is an `error` event naming the stage; either way the
  turn completes (or, for STT, no turn is opened), the next turn works, and every completed
  turn is stored exactly once. (The cases test_provider_faults.py pins with their exact
  messages are left to it: chat 429 and 500, STT stall, TTS drop.)
- A client that stops reading its Converse responses: backpressure reaches the stream's reader,
  memory stays bounded, and cancelling the call ends the session.
- Soak: many turns under a random mix of faults, and the database stopped and restarted over
  and over mid-conversation (the single outage is test_database_resilience.py's).
"""

from __future__ import annotations

import asyncio
import random
import time

import asyncpg
import grpc
import pytest
from voiceagent.v1 import converse_pb2

from server.persistence.database import EmbeddedPostgres
from testing.converse_client import Conversation, config, speech_requests, text
from testing.fakes import Fault
from tests.fuzz_support import STATS, text_turn, usage, wait_no_live

STAGES = {"transcriptions": "speech-to-text", "chat": "chat", "speech": "text-to-speech"}
# (endpoint, faults, surfaces, calls): `surfaces` = the fault outlasts the one retry and is
# reported; `calls` = requests the provider saw. A stream cut after its first bytes is not
# retried (the user may have heard them): one call, reported.
CASES = [
    ("transcriptions", [Fault.status(429, retry_after=0.05)], False, 2),
    ("transcriptions", [Fault.status(500), Fault.status(500)], True, 2),
    ("transcriptions", [Fault.drop(), Fault.drop()], True, 2),
    ("transcriptions", [Fault.status(503)], False, 2),
    ("chat", [Fault.stall(), Fault.stall()], True, 2),
    ("chat", [Fault.drop(), Fault.drop()], True, 2),
    ("chat", [Fault.drop_mid_stream(2)], True, 1),
    ("chat", [Fault.drop_mid_stream(1)], True, 1),
    ("speech", [Fault.stall(), Fault.stall()], True, 2),
    ("speech", [Fault.status(429, retry_after=0.05)], False, 2),
    ("speech", [Fault.status(500), Fault.status(500)], True, 2),
    ("speech", [Fault.drop_mid_stream(1)], True, 1),  # of the reply's 2 chunks
]


async def stored_turns(url: str, session_id: str) -> list[tuple[int, str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT turn_index, role, text FROM turns WHERE session_id = $1 "
            "ORDER BY turn_index, role DESC",
            session_id,
        )
    finally:
        await conn.close()
    return [(r["turn_index"], r["role"], r["text"]) for r in rows]


async def until_any(convo: Conversation, *kinds: str):
    while True:
        event = await convo.next()
        assert event is not None, f"stream ended: {convo.kinds()}"
        if event.WhichOneof("event") in kinds:
            return event


async def one_case(convo, fake, endpoint, faults, surfaces, calls) -> tuple[list, list]:
    """Inject, run one turn through `endpoint`; returns (errors, completed turns) seen."""
    fake.inject(endpoint, *faults)
    before = fake.calls[endpoint]
    if endpoint == "transcriptions":
        convo.send(*speech_requests("Hello there"))
    else:
        convo.send(text(f"Fault on {endpoint}"))
    errors, completed = [], []
    while True:
        event = await until_any(convo, "error", "turn_completed")
        if event.HasField("error"):
            errors.append(event.error)
            if endpoint == "transcriptions":  # nothing was heard: no turn to complete
                break
        else:
            completed.append(event.turn_completed)
            break
    assert fake.calls[endpoint] - before == calls, (endpoint, faults, fake.calls)
    if surfaces:
        assert [e.code for e in errors] == [converse_pb2.ERROR_CODE_PROVIDER_FAILED], errors
        assert errors[0].message.startswith(f"{STAGES[endpoint]} provider failed"), errors
    else:
        assert not errors, errors  # retried: the user never knew
    return errors, completed


async def test_every_provider_fault_mid_conversation_loses_no_turn(
    start_server, fake_openai, database_url
):
    agent = await start_server(openai_timeout_s=0.3, openai_max_retries=1)
    convo = Conversation(agent.stub, config())
    session_id = (await convo.until("session_started")).session_started.session_id
    completed = []
    for case in CASES:
        endpoint, faults = case[:2]
        _, done = await one_case(convo, fake_openai, *case)
        completed += done
        STATS["provider faults injected"] += len(faults)
        words = f"After {endpoint} {len(completed)}"  # the next turn just works
        convo.send(text(words))
        after = await convo.until("turn_completed")
        assert after.turn_completed.agent_text == f"You said: {words}."
        completed.append(after.turn_completed)
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()) == grpc.StatusCode.OK
    await wait_no_live(agent.server)
    # No lost turn: indices 1..n with none skipped, each stored once (user + agent row).
    assert [t.turn_index for t in completed] == list(range(1, len(completed) + 1))
    assert await agent.server.writer.flush(10)
    rows = await stored_turns(database_url, session_id)
    assert [(i, role) for i, role, _ in rows] == [
        (t.turn_index, role) for t in completed for role in ("user", "agent")
    ]
    assert [text for _, role, text in rows if role == "user"] == [t.user_text for t in completed]
    STATS["provider fault cases survived"] += len(CASES)


# -- a client that stops reading ------------------------------------------------------------------
async def never_reading_client(agent, fake, turns: int) -> dict:
    """Send `turns` long text turns and read nothing; returns what was measured."""
    fake.tts_ms_per_char = 0.05
    words = "pizza " * 600  # ~3.6 KB: every event that carries it is big
    base = usage()
    call = agent.stub.Converse()  # the reader/writer style: nothing reads unless asked
    await call.write(config(input_rate=None))
    sent, stalled_at, write = 0, None, None
    for i in range(turns):
        # Not wait_for: cancelling a write cancels the whole call.
        write = asyncio.ensure_future(call.write(text(f"{i} {words}")))
        if not (await asyncio.wait({write}, timeout=2.0))[0]:
            stalled_at = i  # the server stopped taking requests: backpressure reached us
            break
        write.result()
        sent += 1
    # Let the server run to where it blocks; its memory must stay bounded meanwhile.
    peak = usage().rss_mb
    chat_calls = -1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and fake.calls["chat"] != chat_calls:
        chat_calls = fake.calls["chat"]
        await asyncio.sleep(0.25)  # (a poll: done once two samples agree)
        peak = max(peak, usage().rss_mb)
    assert len(agent.server.live) == 1
    call.cancel()  # and the client goes away without a word
    await asyncio.gather(write, return_exceptions=True)
    await wait_no_live(agent.server)
    return {"sent": sent, "stalled_at": stalled_at, "chat_calls": fake.calls["chat"],
            "rss_growth_mb": peak - base.rss_mb}  # fmt: skip


async def test_client_that_never_reads_is_bounded_and_cleaned_up(agent, fake_openai):
    """100 turns (~0.4 MB) in, nothing read: memory stays bounded, cancelling ends it."""
    got = await never_reading_client(agent, fake_openai, turns=100)
    STATS["never-reading client turns sent"] += got["sent"]
    assert got["chat_calls"] < got["sent"], got  # barge-ins: most turns never reached chat
    assert got["rss_growth_mb"] < 40, got
    await text_turn(agent.stub)  # the server goes on


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_never_reading_clients_are_held_back(agent, fake_openai):
    """Until the server stops taking requests (backpressure reaches the client, ~2500 turns
    of 3.6 KB), three times in a row: memory stays bounded and does not creep up."""
    base = usage()
    for _ in range(3):
        got = await never_reading_client(agent, fake_openai, turns=6_000)
        assert got["stalled_at"] is not None, got  # held back: not all 6000 taken in
        assert got["rss_growth_mb"] < 80, got
        STATS["never-reading client turns sent"] += got["sent"]
        STATS["never-reading clients held back (soak)"] += 1
        await text_turn(agent.stub)
    assert usage().rss_mb - base.rss_mb < 120


# -- soak: many turns under random faults, the database stopped and started again and again --------
@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_random_faults_lose_no_turn(start_server, fake_openai, database_url):
    agent = await start_server(openai_timeout_s=0.3, openai_max_retries=1)
    rng = random.Random(1234)
    convo = Conversation(agent.stub, config())
    session_id = (await convo.until("session_started")).session_started.session_id
    completed = []
    for _ in range(60):
        case = rng.choice(CASES)
        endpoint, faults = case[:2]
        _, done = await one_case(convo, fake_openai, *case)
        completed += done
        STATS["provider faults injected"] += len(faults)
        STATS["provider fault cases survived"] += 1
        if rng.random() < 0.5:
            words = f"Plain turn {len(completed)}"
            convo.send(text(words))
            completed.append((await convo.until("turn_completed")).turn_completed)
    convo.close_input()
    await convo.rest()
    await wait_no_live(agent.server)
    assert [t.turn_index for t in completed] == list(range(1, len(completed) + 1))
    assert await agent.server.writer.flush(20)
    rows = await stored_turns(database_url, session_id)
    assert len(rows) == 2 * len(completed)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_soak_database_restarted_again_and_again(start_server, tmp_path):
    pg = EmbeddedPostgres(tmp_path)
    url = await asyncio.to_thread(pg.start)
    try:
        agent = await start_server(database_url=url)
        convo = Conversation(agent.stub, config(input_rate=None))
        session_id = (await convo.until("session_started")).session_started.session_id
        index = 0
        for _ in range(5):
            await asyncio.to_thread(pg.stop)
            for _ in range(3):  # the conversation goes on while the database is down
                index += 1
                convo.send(text(f"Turn {index}"))
                done = await convo.until("turn_completed")
                assert done.turn_completed.turn_index == index
            await asyncio.to_thread(pg.restart)
            assert await agent.server.writer.flush(30)
            STATS["database stop/start cycles survived"] += 1
        convo.close_input()
        await convo.rest()
        await agent.server.stop()
        rows = await stored_turns(url, session_id)
        assert [(i, role) for i, role, _ in rows] == [
            (i, role) for i in range(1, index + 1) for role in ("user", "agent")
        ]  # every turn exactly once
        STATS["turns stored across database restarts"] += index
    finally:
        await asyncio.to_thread(pg.stop)
