"""What routes need, taken from the app's state (set by create_app): the Core, never the
whole server object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, UploadFile
from starlette.requests import HTTPConnection

from server.core import Core
from server.http.audio_codec import MAX_UPLOAD_BYTES, check_size

if TYPE_CHECKING:
    from server.http.ws_registry import WsRegistry


def core(conn: HTTPConnection) -> Core:
    return conn.app.state.core


def ws_registry(conn: HTTPConnection) -> WsRegistry:
    return conn.app.state.ws


CoreDep = Annotated[Core, Depends(core)]


async def read_upload(file: UploadFile, field: str = "audio_file") -> bytes:
    """The upload's bytes, refusing more than the limit without reading past it."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    check_size(len(data), field)
    return data
