"""Reads (and the few synchronous writes) behind the session RPCs and REST endpoints."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

import asyncpg

from pipeline.providers.base import ChatMessage, ToolCallRequest

SESSION_COLUMNS = """
    s.id, c.external_id AS customer_id, s.state, s.instructions, s.voice, s.created_at,
    s.ended_at, s.end_reason,
    (SELECT count(*) FROM turns t WHERE t.session_id = s.id AND t.role = 'agent') AS turn_count"""


class BadPageToken(ValueError):
    pass


def encode_token(*values) -> str:
    raw = json.dumps([v.isoformat() if isinstance(v, datetime) else str(v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(token: str, arity: int) -> list[str]:
    try:
        values = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        return [str(v) for v in values]
    except (ValueError, UnicodeDecodeError):
        raise BadPageToken("page_token is not one this server issued") from None


async def get_session(pool: asyncpg.Pool, session_id: str, tenant_id: str) -> asyncpg.Record | None:
    """The session if it is `tenant_id`'s; another tenant's session is not found."""
    return await pool.fetchrow(
        f"""SELECT {SESSION_COLUMNS} FROM conversation_sessions s
            LEFT JOIN customers c ON c.id = s.customer_id
            WHERE s.id = $1 AND s.tenant_id = $2""",
        uuid.UUID(session_id),
        tenant_id,
    )


async def load_history(
    pool: asyncpg.Pool, session_id: str, tenant_id: str
) -> tuple[list[ChatMessage], int]:
    """The chat history as the agent heard it, and the next turn index."""
    rows = await pool.fetch(
        """SELECT turn_index, role, text, spoken_text FROM turns
           WHERE session_id = $1 AND tenant_id = $2
           ORDER BY turn_index, role DESC""",  # 'user' sorts after 'agent': DESC puts it first
        uuid.UUID(session_id),
        tenant_id,
    )
    calls = await pool.fetch(
        """SELECT turn_index, call_id, name, arguments, outcome, output, error FROM tool_calls
           WHERE session_id = $1 AND tenant_id = $2 AND outcome <> 'cancelled'
           ORDER BY turn_index, created_at""",
        uuid.UUID(session_id),
        tenant_id,
    )
    by_turn: dict[int, list[asyncpg.Record]] = {}
    for call in calls:
        by_turn.setdefault(call["turn_index"], []).append(call)
    history = []
    for row in rows:
        if row["role"] == "user":
            history.append(ChatMessage("user", row["text"]))
            continue
        for call in by_turn.pop(row["turn_index"], []):  # its calls, then what was heard
            history += _tool_messages(call)
        if row["spoken_text"]:
            history.append(ChatMessage("assistant", row["spoken_text"]))
    for late in by_turn.values():  # calls of a turn with no stored reply (cut, then finished)
        for call in late:
            history += _tool_messages(call)
    next_index = (rows[-1]["turn_index"] + 1) if rows else 1
    return history, next_index


def _tool_messages(call: asyncpg.Record) -> list[ChatMessage]:
    request = ToolCallRequest(call["call_id"], call["name"], call["arguments"])
    if call["outcome"] == "completed":
        result = call["output"]
    else:
        result = json.dumps({"error": call["error"] or f"the tool {call['name']} failed"})
    return [
        ChatMessage("assistant", "", tool_calls=(request,)),
        ChatMessage("tool", result, tool_call_id=call["call_id"]),
    ]


TOOL_CALL_COLUMNS = (
    "turn_index, call_id, name, arguments, outcome, output, error, reason, duration_ms"
)


async def list_sessions(
    pool: asyncpg.Pool, tenant_id: str, customer_id: str, page_size: int, page_token: str
) -> tuple[list[asyncpg.Record], str]:
    args: list[object]  # the tenant and customer ids, a page token's datetime and UUID, a limit
    where, args = ["s.tenant_id = $1"], [tenant_id]
    if customer_id:
        args.append(customer_id)
        where.append(f"c.external_id = ${len(args)}")
    if page_token:
        created, sid = decode_token(page_token, 2)
        try:
            args += [datetime.fromisoformat(created), uuid.UUID(sid)]
        except ValueError:
            raise BadPageToken("page_token is not one this server issued") from None
        where.append(f"(s.created_at, s.id) < (${len(args) - 1}, ${len(args)})")
    args.append(page_size + 1)
    rows = await pool.fetch(
        f"""SELECT {SESSION_COLUMNS} FROM conversation_sessions s
            LEFT JOIN customers c ON c.id = s.customer_id
            WHERE {" AND ".join(where)}
            ORDER BY s.created_at DESC, s.id DESC LIMIT ${len(args)}""",
        *args,
    )
    if len(rows) <= page_size:
        return list(rows), ""
    last = rows[page_size - 1]
    return list(rows[:page_size]), encode_token(last["created_at"], last["id"])


async def list_turns(
    pool: asyncpg.Pool, session_id: str, tenant_id: str, page_size: int, page_token: str
) -> tuple[list[dict], str]:
    """A page of turns; agent turns carry their tool calls (`tool_calls`, oldest first)."""
    after_index, after_role = -1, -1
    if page_token:
        index, role = decode_token(page_token, 2)
        if not (index.lstrip("-").isdigit() and role in ("0", "1")):
            raise BadPageToken("page_token is not one this server issued")
        after_index, after_role = int(index), int(role)
    rows = await pool.fetch(
        """SELECT t.*, CASE t.role WHEN 'user' THEN 0 ELSE 1 END AS role_order,
                  m.vad_stop_to_transcript_ms, m.llm_first_token_ms, m.tts_first_byte_ms,
                  m.end_of_speech_to_first_audio_ms
           FROM turns t LEFT JOIN turn_metrics m
             ON m.session_id = t.session_id AND m.turn_index = t.turn_index AND t.role = 'agent'
           WHERE t.session_id = $1 AND t.tenant_id = $5
             AND (t.turn_index, CASE t.role WHEN 'user' THEN 0 ELSE 1 END) > ($2, $3)
           ORDER BY t.turn_index, role_order LIMIT $4""",
        uuid.UUID(session_id), after_index, after_role, page_size + 1, tenant_id,
    )  # fmt: skip
    more = len(rows) > page_size
    rows = rows[:page_size]
    calls: dict[int, list[dict]] = {}
    if rows:
        found = await pool.fetch(
            f"""SELECT {TOOL_CALL_COLUMNS} FROM tool_calls
                WHERE session_id = $1 AND tenant_id = $2 AND turn_index BETWEEN $3 AND $4
                ORDER BY turn_index, created_at, call_id""",
            uuid.UUID(session_id), tenant_id, rows[0]["turn_index"], rows[-1]["turn_index"],
        )  # fmt: skip
        for call in found:
            calls.setdefault(call["turn_index"], []).append(dict(call))
    page = [
        {**dict(r), "tool_calls": calls.get(r["turn_index"], []) if r["role"] == "agent" else []}
        for r in rows
    ]
    if not more:
        return page, ""
    last = rows[-1]
    return page, encode_token(last["turn_index"], last["role_order"])


async def write_now(pool: asyncpg.Pool, writes) -> None:
    """Write records now, bypassing the writer (CreateSession must be durable on return)."""
    async with pool.acquire() as conn, conn.transaction():
        for write in writes:
            await conn.execute(write.sql, *write.args)
