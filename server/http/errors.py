"""One error shape for the whole HTTP API: `{"detail": ...}` with a status that fits.

Routes raise the domain's own exceptions (the same ones the gRPC services map to status
codes) or HTTPException; the handlers here turn the former into HTTP statuses, so no route
repeats the mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from pipeline.providers.base import ProviderError
from server.http.audio_codec import AudioError, AudioTooLarge
from server.http.schemas import ErrorOut
from server.persistence.queries import BadPageToken
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.validation import InvalidRequest

log = logging.getLogger(__name__)

GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 503,
    grpc.StatusCode.UNAVAILABLE: 503,
}
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "Bad input (e.g. audio that cannot be decoded).",
        404: "Unknown session.",
        409: "The session has ended, or another request is live on it.",
        413: "Upload over 25 MiB, or audio over 60 seconds.",
        422: "Missing or invalid fields, or malformed JSON.",
        502: "A provider (STT, chat, TTS) failed.",
        503: "A provider is not configured or busy, the database is down, or the server is full.",
    }.items()
}
PROVIDER_TO_HTTP = {"provider_not_configured": 503, "resource_exhausted": 503}  # else 502


def provider_status(code: str) -> int:
    return PROVIDER_TO_HTTP.get(code, 502)


@contextmanager
def database_errors() -> Iterator[None]:
    """Around database reads and writes: an outage becomes 503 with the cause."""
    try:
        yield
    except DB_DOWN as exc:
        raise HTTPException(
            503, f"the database is unavailable: {type(exc).__name__}: {exc}"
        ) from None


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def invalid_request(request: Request, exc: InvalidRequest) -> JSONResponse:
        return _json(GRPC_TO_HTTP.get(exc.code, 400), str(exc))

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, exc: AudioError) -> JSONResponse:
        return _json(413 if isinstance(exc, AudioTooLarge) else 400, str(exc))

    @app.exception_handler(ProviderError)
    async def provider_error(request: Request, exc: ProviderError) -> JSONResponse:
        return _json(provider_status(exc.code), str(exc))

    @app.exception_handler(BadPageToken)
    async def bad_page_token(request: Request, exc: BadPageToken) -> JSONResponse:
        return _json(400, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _json(500, f"internal error ({type(exc).__name__}); see the server log")
