"""What routes need from the running server, taken from the app's state (set by create_app)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import UploadFile
from starlette.requests import HTTPConnection

from server.http.audio_codec import MAX_UPLOAD_BYTES, check_size

if TYPE_CHECKING:
    from server.app import VoiceServer
    from server.http.live import SessionAccess
    from server.http.ws_registry import WsRegistry


def voice_server(conn: HTTPConnection) -> VoiceServer:
    return conn.app.state.voice


def session_access(conn: HTTPConnection) -> SessionAccess:
    return conn.app.state.access


def ws_registry(conn: HTTPConnection) -> WsRegistry:
    return conn.app.state.ws


async def read_upload(file: UploadFile, field: str = "audio_file") -> bytes:
    """The upload's bytes, refusing more than the limit without reading past it."""
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    check_size(len(data), field)
    return data
