"""Conversation management: start a session, then send it typed turns.

A session started here is the same stored session the gRPC API and the WebSocket use: its id
works everywhere, and its turns are kept in Postgres.
"""

from __future__ import annotations

from fastapi import APIRouter

from server.auth.http import CallerDep
from server.http.deps import CoreDep
from server.http.errors import ERROR_RESPONSES
from server.http.schemas import ProcessIn, StartIn, StartOut, TurnOut
from server.http.turns import run_turn, turn_response
from server.sessions import ids
from server.sessions.reads import database_errors

router = APIRouter(tags=["Conversation management"])
GREETING = "Hello! How can I help you today?"


@router.post(
    "/conversation/start",
    summary="Start a conversation session",
    response_model=StartOut,
    responses=ERROR_RESPONSES,
)
async def start_conversation(body: StartIn, core: CoreDep, caller: CallerDep) -> StartOut:
    """Creates a session for `customer_id` (and the customer, if new); it is stored before
    this returns. Use its `session_id` with /conversation/process, /voice-agent/process, the
    WebSocket or the gRPC Converse stream."""
    with database_errors():
        record = await core.opener.create(
            caller, body.customer_id, body.instructions or "", body.voice or ""
        )
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
async def process_conversation(body: ProcessIn, core: CoreDep, caller: CallerDep) -> TurnOut:
    """One turn through the voice pipeline with typed input; set `include_audio` to get the
    reply spoken, as MP3 (without it, no speech is synthesized)."""
    sid = ids.client_chosen(body.session_id, caller.tenant_id)
    outcome = await run_turn(
        core.opener,
        caller,
        sid,
        lambda session: session.push_text(body.text),
        speak=body.include_audio,
        tools={"tools": body.tools, "tool_sets": body.tool_sets},
    )
    return TurnOut(**await turn_response(outcome, body.include_audio))
