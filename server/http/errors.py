"""One error shape for the whole HTTP API: `{"detail": ...}`, and the HTTP edge's one table
from the core's neutral error Kinds to statuses.

Routes raise the core's `RequestError`, provider errors, audio errors or HTTPException; the
handlers here turn them into responses, so no route repeats the mapping.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline.providers.base import ProviderError
from server.http.audio_codec import AudioError, AudioTooLarge
from server.http.schemas import ErrorOut
from server.sessions.errors import Kind, RequestError, provider_kind

log = logging.getLogger(__name__)

HTTP_STATUS = {
    Kind.INVALID: 400,
    Kind.TOO_LARGE: 422,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.EXHAUSTED: 503,
    Kind.UNAVAILABLE: 503,
    Kind.NOT_CONFIGURED: 503,
    Kind.PROVIDER_FAILED: 502,
    Kind.UNAUTHENTICATED: 401,
    Kind.PERMISSION_DENIED: 403,
    Kind.RATE_LIMITED: 429,
}
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "Bad input (e.g. audio that cannot be decoded).",
        401: "No credentials, or not valid ones (unknown, revoked or expired).",
        403: "The credentials do not allow this (verb, or another session).",
        404: "Unknown session (or another tenant's).",
        409: "The session has ended, or another request is live on it.",
        413: "Upload over 25 MiB, or audio over 60 seconds.",
        422: "Missing or invalid fields, or malformed JSON.",
        429: "Over a per-tenant limit; retry after `Retry-After` seconds.",
        502: "A provider (STT, chat, TTS) failed.",
        503: "A provider is not configured or busy, the database is down, or the server is full.",
    }.items()
}


def status_of(kind: Kind) -> int:
    return HTTP_STATUS[kind]


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def headers_for(exc: RequestError) -> dict[str, str]:
    """What the status needs besides the body: how to authenticate, when to retry."""
    if exc.kind is Kind.UNAUTHENTICATED:
        return {"WWW-Authenticate": "Bearer"}
    if exc.retry_after_s is not None:
        return {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    return {}


def field_error(error: dict) -> dict:
    """One of FastAPI's 422 field errors without what would echo the request back: `type`,
    `loc` and `msg` stay, `input` (the rejected value, which may be huge or private) and `url`
    go, and `ctx` keeps only plain values that are not the input (a limit, the expected
    values, the JSON decoder's reason)."""
    out = {key: error[key] for key in ("type", "loc", "msg") if key in error}
    rejected = error.get("input")
    ctx = {
        key: value
        for key, value in (error.get("ctx") or {}).items()
        if isinstance(value, int | float | str)
        and not (isinstance(value, str) and isinstance(rejected, str) and rejected in value)
    }
    if ctx:
        out["ctx"] = ctx
    return out


def _unparseable_json(request: Request, exc: HTTPException) -> str | None:
    """FastAPI answers a JSON body that json.loads raises on with anything but JSONDecodeError
    (nested too deeply, not UTF-8) with a bare 400; the API documents malformed JSON as 422.
    Returns the reason when that is what `exc` is."""
    cause = exc.__cause__
    if exc.status_code != 400 or not isinstance(cause, RecursionError | ValueError):
        return None
    if "json" not in request.headers.get("content-type", ""):
        return None
    if isinstance(cause, RecursionError):
        return "nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "not valid UTF-8"
    return type(cause).__name__


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": [field_error(e) for e in exc.errors()]}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        reason = _unparseable_json(request, exc)
        if reason is None:
            return await http_exception_handler(request, exc)
        error = {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}
        return JSONResponse({"detail": [{**error, "ctx": {"error": reason}}]}, status_code=422)

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _json(HTTP_STATUS[exc.kind], str(exc), headers_for(exc))

    @app.exception_handler(AudioError)
    async def audio_error(request: Request, exc: AudioError) -> JSONResponse:
        return _json(413 if isinstance(exc, AudioTooLarge) else 400, str(exc))

    @app.exception_handler(ProviderError)
    async def provider_error(request: Request, exc: ProviderError) -> JSONResponse:
        return _json(HTTP_STATUS[provider_kind(exc.code)], str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _json(500, f"internal error ({type(exc).__name__}); see the server log")
