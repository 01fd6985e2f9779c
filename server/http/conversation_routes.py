"""Conversation management: start a session, then send it typed turns.

A session started here is the same stored session the gRPC API and the WebSocket use: its id
works everywhere, and its turns are kept in Postgres.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from server.http.deps import session_access
from server.http.errors import ERROR_RESPONSES, database_errors
from server.http.live import SessionAccess, session_uuid
from server.http.schemas import ProcessIn, StartIn, StartOut, TurnOut
from server.http.turns import run_turn, turn_response

router = APIRouter(tags=["Conversation management"])
GREETING = "Hello! How can I help you today?"


@router.post(
    "/conversation/start",
    summary="Start a conversation session",
    response_model=StartOut,
    responses=ERROR_RESPONSES,
)
async def start_conversation(
    body: StartIn, access: Annotated[SessionAccess, Depends(session_access)]
) -> StartOut:
    """Creates a session for `customer_id` (and the customer, if new); it is stored before
    this returns. Use its `session_id` with /conversation/process, /voice-agent/process, the
    WebSocket or the gRPC Converse stream."""
    with database_errors():
        record = await access.create(body.customer_id, body.instructions, body.voice)
    return StartOut(
        session_id=record.id,
        customer_id=record.customer_id,
        state="started",
        greeting=GREETING,
        created_at=record.created_at,
    )


@router.post(
    "/conversation/process",
    summary="Send a typed turn and get the agent's reply",
    response_model=TurnOut,
    responses=ERROR_RESPONSES,
)
async def process_conversation(
    body: ProcessIn, access: Annotated[SessionAccess, Depends(session_access)]
) -> TurnOut:
    """One turn through the voice pipeline with typed input; set `include_audio` to get the
    reply spoken, as MP3 (without it, no speech is synthesized)."""
    sid = session_uuid(body.session_id)
    outcome = await run_turn(
        access, sid, lambda session: session.push_text(body.text), speak=body.include_audio
    )
    return TurnOut(**await turn_response(outcome, body.include_audio))
