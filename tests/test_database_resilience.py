"""Migrations, an outage in the middle of a conversation, shutdown flush, unreachable database."""

from __future__ import annotations

import asyncio
import sys
import uuid

import asyncpg

from server.persistence.database import EmbeddedPostgres
from server.persistence.migrate import migrate, migration_files
from testing.converse_client import Conversation, config, text
from tests.test_process import run


async def test_migrations_apply_once_even_when_two_processes_race(database_url):
    pools = [await asyncpg.create_pool(database_url, min_size=1, max_size=1) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
        # Each migration was applied exactly once, by one or the other (the other waited).
        names = [name for _, name, _ in migration_files()]
        assert sorted(results[0] + results[1]) == names
        assert await migrate(pools[0]) == []  # and again: nothing to do
        rows = await pools[0].fetch("SELECT version, name FROM schema_migrations")
        assert sorted((r["version"], r["name"]) for r in rows) == [
            (v, name) for v, name, _ in migration_files()
        ]
    finally:
        for pool in pools:
            await pool.close()


async def count_turn_rows(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM turns")
    finally:
        await conn.close()


async def test_database_down_mid_session_loses_no_turn(start_server, tmp_path):
    """A dedicated embedded Postgres is stopped between turns and started again."""
    pg = EmbeddedPostgres(tmp_path)
    url = await asyncio.to_thread(pg.start)
    try:
        agent = await start_server(database_url=url)
        convo = Conversation(agent.stub, config(input_rate=None))
        convo.send(text("First turn"))
        await convo.until("turn_completed")
        assert await agent.server.writer.flush(10)

        await asyncio.to_thread(pg.stop)
        for i in (2, 3):  # the conversation goes on while the database is down
            convo.send(text(f"Turn number {i}"))
            done = await convo.until("turn_completed", lambda t, i=i: t.turn_index == i)
            assert done.turn_completed.agent_text == f"You said: Turn number {i}."
        assert not await agent.server.writer.flush(0.5)  # held, not written, not lost
        assert agent.server.writer.pending > 0 and not agent.server.writer.connected

        await asyncio.to_thread(pg.restart)
        assert await agent.server.writer.flush(20)
        assert agent.server.writer.connected
        convo.close_input()
        await convo.rest()
        await agent.server.stop()
        assert await count_turn_rows(url) == 6  # 3 turns x (user, agent), each exactly once
    finally:
        await asyncio.to_thread(pg.stop)


async def test_shutdown_flushes_the_writer(start_server, database_url):
    agent = await start_server()
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Remember this"))
    await convo.until("turn_completed")
    convo.close_input()
    await convo.rest()
    await agent.server.stop()
    assert await count_turn_rows(database_url) == 2, agent.server.writer.metrics


async def test_unreachable_database_at_start_names_host_not_password():
    url = f"postgresql://voice:s3cret-{uuid.uuid4().hex[:6]}@127.0.0.1:9/voice"
    code, _, err = await run(
        sys.executable,
        "-m",
        "server",
        env={"DATABASE_URL": url, "GRPC_PORT": "0", "HTTP_PORT": "0"},
    )
    assert code == 2
    assert "cannot connect to the database at postgresql://voice@127.0.0.1:9/voice" in err
    assert "s3cret" not in err
