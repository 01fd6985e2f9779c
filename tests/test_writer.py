"""The write-behind writer against a real Postgres: flush semantics and refused records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from pipeline.turn import State
from server.persistence import records
from server.persistence.migrate import migrate
from server.persistence.writer import WriteBehindWriter


@pytest.fixture
async def writer(database_url):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await migrate(pool)
    writer = WriteBehindWriter(pool, batch_size=500)
    writer.start()
    yield writer
    await writer.close()
    await pool.close()


def new_session() -> tuple[str, list]:
    sid = str(uuid.uuid4())
    return sid, records.session_created(sid, "c1", "", None, {}, datetime.now(UTC))


async def test_flush_waits_for_earlier_records_not_for_an_empty_queue(writer):
    sid, created = new_session()
    writer.submit(*created)
    later = [records.state_changed(sid, State.LISTENING, datetime.now(UTC))] * 4_000
    writer.submit(*later)  # submitted before the flush too: all of it is waited for
    assert await writer.flush(30)
    assert writer.pending == 0
    writer.submit(*created)
    flushing = writer.flush(30)
    writer.submit(*later)  # after the flush call: not waited for
    assert await flushing
    assert writer.pending > 0  # the flush returned while newer records were still queued
    assert await writer.flush(30)


async def test_a_record_the_driver_refuses_is_skipped_and_the_rest_written(writer):
    sid, created = new_session()
    bad = records.Write(records._STATE, ("not-a-uuid", "listening", datetime.now(UTC)))
    good = records.session_ended(sid, datetime.now(UTC), "done")
    writer.submit(*created, bad, good)
    assert await writer.flush(10)
    assert writer.metrics["failed"] == 1 and writer.connected
    row = await writer.pool.fetchrow(
        "SELECT state, end_reason FROM conversation_sessions WHERE id = $1", uuid.UUID(sid)
    )
    assert (row["state"], row["end_reason"]) == ("ended", "done")
