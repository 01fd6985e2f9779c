"""A session's call recordings over REST: the list, and each file as a download.

Why its own module: recordings are files, not rows (server/recordings), so these routes share
only the tenant check with /sessions — the same `caller.require(READ, sid)` and the session's
row in the caller's tenant (404 for an unknown id and for another tenant's) before anything
on disk is looked at. Listings first wait briefly for the recording writer, so a stream that
just ended shows its finished file.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from server.auth.caller import READ
from server.auth.http import CallerDep
from server.http.deps import CoreDep
from server.http.errors import ERROR_RESPONSES
from server.recordings.files import NAME_PATTERN, RecordingFile
from server.sessions import ids

router = APIRouter(tags=["Sessions"])


class RecordingOut(BaseModel):
    name: str = Field(
        description="The file's name: the stream's start (UTC).",
        examples=["20250101T120000.000000Z.wav"],
    )
    started_at: datetime
    duration_s: float = Field(description="Length of the recording.", examples=[42.5])
    bytes: int = Field(description="Size of the WAV file.")
    sample_rate: int = Field(examples=[16000])
    channels: int = Field(2, description="2: left the caller, right the agent.")
    complete: bool = Field(description="False while the stream is still being recorded.")
    download_url: str = Field(description="GET this for the file (audio/wav).")


class RecordingList(BaseModel):
    session_id: str
    recordings: list[RecordingOut] = Field(description="One per recorded stream, oldest first.")


def recording_out(session_id: str, f: RecordingFile) -> RecordingOut:
    return RecordingOut(
        name=f.name,
        started_at=f.started_at,
        duration_s=f.duration_s,
        bytes=f.bytes,
        sample_rate=f.sample_rate,
        channels=f.channels,
        complete=f.complete,
        download_url=f"/sessions/{session_id}/recording?name={f.name}",
    )


async def own_session(session_id: str, core, caller) -> str:
    """The canonical id of the caller's session (READ on it), or 403/404."""
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(READ, sid)
    await core.reads.session(caller.tenant_id, sid, session_id)
    return sid


@router.get(
    "/sessions/{session_id}/recordings",
    summary="A session's call recordings",
    response_model=RecordingList,
    responses=ERROR_RESPONSES,
)
async def list_recordings(session_id: str, core: CoreDep, caller: CallerDep) -> RecordingList:
    """Recordings of the session's streams (SessionConfig.record, or RECORD_SESSIONS)."""
    sid = await own_session(session_id, core, caller)
    found = await core.recordings.list(caller.tenant_id, sid)
    return RecordingList(session_id=sid, recordings=[recording_out(sid, f) for f in found])


@router.get(
    "/sessions/{session_id}/recording",
    summary="Download a call recording (WAV: left caller, right agent)",
    response_class=FileResponse,
    responses={
        **ERROR_RESPONSES,
        200: {
            "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The WAV file: 16-bit stereo, left the caller, right the agent.",
        },
        409: {**ERROR_RESPONSES[409], "description": "That recording is still being recorded."},
    },
)
async def download_recording(
    session_id: str,
    core: CoreDep,
    caller: CallerDep,
    name: Annotated[
        str | None,
        Query(pattern=NAME_PATTERN, description="A name from the list; omitted: the latest."),
    ] = None,
) -> FileResponse:
    """The latest complete recording, or the one named; 409 while that one is still being
    recorded."""
    sid = await own_session(session_id, core, caller)
    found = await core.recordings.find(caller.tenant_id, sid, name)
    if found is None:
        what = f"no recording named {name}" if name else "no finished recording"
        raise HTTPException(404, f"session {session_id} has {what}")
    if not found.complete:
        raise HTTPException(409, f"recording {found.name} is still being recorded")
    return FileResponse(found.path, media_type="audio/wav", filename=f"{sid}-{found.name}")
