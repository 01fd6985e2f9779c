"""Stored sessions and their transcripts over REST: the SessionService reads, as JSON.

Same queries and paging tokens as the gRPC SessionService; reads first wait briefly for queued
writes, so a turn that just completed is listed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query

from server import validation as check
from server.app import VoiceServer
from server.http.deps import voice_server
from server.http.errors import ERROR_RESPONSES, database_errors
from server.http.live import session_uuid
from server.http.schemas import Latency
from server.http.session_schemas import SessionOut, SessionPage, StoredTurn, TurnPage
from server.persistence import queries
from server.session_service import MAX_PAGE, READ_FLUSH_S

router = APIRouter(tags=["Sessions"])
Server = Annotated[VoiceServer, Depends(voice_server)]
PageSize = Query(ge=1, le=MAX_PAGE, description=f"1..{MAX_PAGE}.")
PageToken = Query(max_length=1000, description="next_page_token of the previous page.")


def session_out(row, server: VoiceServer) -> SessionOut:
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
        live=str(row["id"]) in server.live,
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
    )


async def _row(server: VoiceServer, session_id: str):
    sid = session_uuid(session_id)
    with database_errors():
        await server.store.writer.flush(READ_FLUSH_S)
        row = await queries.get_session(server.store.db.pool, sid)
    if row is None:
        raise HTTPException(404, f"session {session_id} not found")
    return row


@router.get(
    "/sessions",
    summary="List sessions, newest first",
    response_model=SessionPage,
    responses=ERROR_RESPONSES,
)
async def list_sessions(
    server: Server,
    customer_id: Annotated[
        str, Query(max_length=check.MAX_NAME_CHARS, description="Only this customer's.")
    ] = "",
    page_size: Annotated[int, PageSize] = 50,
    page_token: Annotated[str, PageToken] = "",
) -> SessionPage:
    with database_errors():
        await server.store.writer.flush(READ_FLUSH_S)
        rows, token = await queries.list_sessions(
            server.store.db.pool, customer_id, page_size, page_token
        )
    return SessionPage(sessions=[session_out(r, server) for r in rows], next_page_token=token)


@router.get(
    "/sessions/{session_id}",
    summary="Get one session",
    response_model=SessionOut,
    responses=ERROR_RESPONSES,
)
async def get_session(session_id: str, server: Server) -> SessionOut:
    """`session_id` is the stored UUID, or the id a WebSocket client picked (mapped the same
    way as on the WebSocket)."""
    return session_out(await _row(server, session_id), server)


@router.get(
    "/sessions/{session_id}/turns",
    summary="A session's transcript, oldest first",
    response_model=TurnPage,
    responses=ERROR_RESPONSES,
)
async def list_turns(
    session_id: str,
    server: Server,
    page_size: Annotated[int, PageSize] = 100,
    page_token: Annotated[str, PageToken] = "",
) -> TurnPage:
    row = await _row(server, session_id)
    with database_errors():
        rows, token = await queries.list_turns(
            server.store.db.pool, str(row["id"]), page_size, page_token
        )
    return TurnPage(turns=[turn_out(r) for r in rows], next_page_token=token)
