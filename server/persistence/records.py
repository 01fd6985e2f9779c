"""What the live pipeline writes, as idempotent statements for the write-behind writer.

Each statement is keyed (session id, turn index, role) or sets absolute values, so writing a
record twice has the effect of writing it once.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from pipeline.tools.lifecycle import ToolCall
from pipeline.turn import State, Turn
from server.persistence.writer import Write

STATE_NAMES = {s: s.name.lower() for s in State}

_CUSTOMER = """
INSERT INTO customers (tenant_id, external_id) VALUES ($1, $2)
ON CONFLICT (tenant_id, external_id) DO NOTHING"""

_SESSION = """
INSERT INTO conversation_sessions (id, tenant_id, customer_id, instructions, voice, config,
                                   created_at)
VALUES ($1, $7, (SELECT id FROM customers WHERE tenant_id = $7 AND external_id = $2), $3, $4,
        $5::jsonb, $6)
ON CONFLICT (id) DO NOTHING"""

_STATE = """
UPDATE conversation_sessions SET state = $2, updated_at = $3
WHERE id = $1 AND ended_at IS NULL"""

_INSTRUCTIONS = "UPDATE conversation_sessions SET instructions = $2 WHERE id = $1"

_END = """
UPDATE conversation_sessions SET state = 'ended', ended_at = $2, end_reason = $3, updated_at = $2
WHERE id = $1 AND ended_at IS NULL"""

# A turn's tenant is its session's: taken from the row, never from the caller.
_TENANT_OF_SESSION = "(SELECT tenant_id FROM conversation_sessions WHERE id = $1)"

_TURN = f"""
INSERT INTO turns (session_id, turn_index, role, text, spoken_text, interrupted,
                   start_offset_ms, end_offset_ms, audio_ms, created_at, tenant_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {_TENANT_OF_SESSION})
ON CONFLICT (session_id, turn_index, role) DO NOTHING"""

_METRICS = f"""
INSERT INTO turn_metrics (session_id, turn_index, vad_stop_to_transcript_ms, llm_first_token_ms,
                          tts_first_byte_ms, end_of_speech_to_first_audio_ms, tenant_id)
VALUES ($1, $2, $3, $4, $5, $6, {_TENANT_OF_SESSION})
ON CONFLICT (session_id, turn_index) DO NOTHING"""


_TOOL_CALL = f"""
INSERT INTO tool_calls (session_id, call_id, turn_index, name, arguments, outcome, output,
                        error, reason, duration_ms, created_at, tenant_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, {_TENANT_OF_SESSION})
ON CONFLICT (session_id, call_id) DO NOTHING"""


def _clean(text: str) -> str:
    """Postgres text cannot hold NUL; model output is not trusted to be free of it."""
    return text.replace("\x00", "\ufffd")


def session_created(
    session_id: str,
    customer_id: str,
    instructions: str,
    voice: str | None,
    config: dict,
    created_at: datetime,
    tenant_id: str = "default",
) -> list[Write]:
    writes = [Write(_CUSTOMER, (tenant_id, customer_id))] if customer_id else []
    args = (uuid.UUID(session_id), customer_id or None, instructions, voice,
            json.dumps(config), created_at, tenant_id)  # fmt: skip
    return writes + [Write(_SESSION, args)]


def state_changed(session_id: str, state: State, at: datetime) -> Write:
    return Write(_STATE, (uuid.UUID(session_id), STATE_NAMES[state], at))


def instructions_changed(session_id: str, instructions: str) -> Write:
    return Write(_INSTRUCTIONS, (uuid.UUID(session_id), instructions))


def session_ended(session_id: str, at: datetime, reason: str) -> Write:
    return Write(_END, (uuid.UUID(session_id), at, reason))


def turn_closed(session_id: str, turn: Turn, spoken: str, at: datetime) -> list[Write]:
    sid = uuid.UUID(session_id)
    user = (sid, turn.index, "user", _clean(turn.user_text), None, False,
            turn.start_offset_ms, turn.end_offset_ms, None, at)  # fmt: skip
    agent = (sid, turn.index, "agent", _clean(turn.agent_text), _clean(spoken),
             turn.interrupted, None, None, round(turn.audio_sent_ms), at)  # fmt: skip
    latency = turn.latency_ms()
    metrics = (sid, turn.index, latency["vad_stop_to_transcript_ms"],
               latency["llm_first_token_ms"], latency["tts_first_byte_ms"],
               latency["end_of_speech_to_first_audio_ms"])  # fmt: skip
    # An agent-only turn (the dead-air recovery line) has no user row: history has no "" input.
    users = [Write(_TURN, user)] if turn.user_text else []
    return [*users, Write(_TURN, agent), Write(_METRICS, metrics)]


def tool_call_done(session_id: str, call: ToolCall, at: datetime) -> Write:
    assert call.outcome is not None
    duration = call.duration_ms if call.ran else -1
    args = (uuid.UUID(session_id), call.call_id, call.turn_index, _clean(call.name),
            _clean(call.arguments), call.outcome.value, _clean(call.output), _clean(call.error),
            call.reason, duration, at)  # fmt: skip
    return Write(_TOOL_CALL, args)
