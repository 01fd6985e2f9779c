"""Stored sessions and their transcripts over REST: the SessionService reads, as JSON.

The same `SessionReads` as the gRPC SessionService (queries, paging tokens, read-your-writes),
so a turn that just completed is listed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator

from server.auth.caller import READ
from server.auth.http import CallerDep
from server.http.deps import CoreDep
from server.http.errors import ERROR_RESPONSES
from server.http.schemas import NO_NUL, Latency, StoredToolCall, no_nul
from server.http.session_schemas import (
    SessionOut,
    SessionPage,
    StoredTurn,
    TurnPage,
)
from server.sessions import checks, ids
from server.sessions.reads import MAX_PAGE, SessionReads

router = APIRouter(tags=["Sessions"])
PageSize = Query(ge=1, le=MAX_PAGE, description=f"1..{MAX_PAGE}.")
PageToken = Query(max_length=1000, description="next_page_token of the previous page.")


def session_out(row, reads: SessionReads) -> SessionOut:
    return SessionOut(
        session_id=str(row["id"]),
        customer_id=row["customer_id"] or "",
        state=row["state"],
        instructions=row["instructions"],
        voice=row["voice"] or "",
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        end_reason=row["end_reason"] or "",
        turn_count=row["turn_count"],
        live=reads.is_live(str(row["id"])),
    )


def turn_out(row) -> StoredTurn:
    latency = None
    if row["role"] == "agent" and row["llm_first_token_ms"] is not None:
        latency = Latency(**{name: row[name] for name in Latency.model_fields})
    return StoredTurn(
        turn_index=row["turn_index"],
        role=row["role"],
        text=row["text"],
        spoken_text=row["spoken_text"] or "",
        interrupted=row["interrupted"],
        start_offset_ms=row["start_offset_ms"] or 0,
        end_offset_ms=row["end_offset_ms"] or 0,
        audio_ms=row["audio_ms"] or 0,
        latency=latency,
        created_at=row["created_at"],
        tool_calls=[
            StoredToolCall(**{k: c[k] for k in StoredToolCall.model_fields})
            for c in row.get("tool_calls", ())
        ],
    )


@router.get(
    "/sessions",
    summary="List sessions, newest first",
    response_model=SessionPage,
    responses=ERROR_RESPONSES,
)
async def list_sessions(
    core: CoreDep,
    caller: CallerDep,
    customer_id: Annotated[
        str,
        Query(
            max_length=checks.MAX_NAME_CHARS,
            description="Only this customer's.",
            json_schema_extra={"pattern": NO_NUL},
        ),
        AfterValidator(no_nul),  # a NUL would reach Postgres, which refuses it: 422 here
    ] = "",
    page_size: Annotated[int, PageSize] = 50,
    page_token: Annotated[str, PageToken] = "",
) -> SessionPage:
    """The caller's tenant's sessions (a session-scoped token: its session only)."""
    caller.require(READ, caller.session_id)
    rows, token = await core.reads.sessions(caller.tenant_id, customer_id, page_size, page_token)
    shown = [session_out(r, core.reads) for r in rows if caller.may_see(str(r["id"]))]
    return SessionPage(sessions=shown, next_page_token=token)


@router.get(
    "/sessions/{session_id}",
    summary="Get one session",
    response_model=SessionOut,
    responses=ERROR_RESPONSES,
)
async def get_session(session_id: str, core: CoreDep, caller: CallerDep) -> SessionOut:
    """`session_id` is the stored UUID, or the id a WebSocket client picked (mapped the same
    way as on the WebSocket)."""
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(READ, sid)
    row = await core.reads.session(caller.tenant_id, sid, session_id)
    return session_out(row, core.reads)


@router.get(
    "/sessions/{session_id}/turns",
    summary="A session's transcript, oldest first",
    response_model=TurnPage,
    responses=ERROR_RESPONSES,
)
async def list_turns(
    session_id: str,
    core: CoreDep,
    caller: CallerDep,
    page_size: Annotated[int, PageSize] = 100,
    page_token: Annotated[str, PageToken] = "",
) -> TurnPage:
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(READ, sid)
    rows, token = await core.reads.turns(caller.tenant_id, sid, page_size, page_token, session_id)
    return TurnPage(turns=[turn_out(r) for r in rows], next_page_token=token)
