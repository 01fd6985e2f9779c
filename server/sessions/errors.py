"""Neutral error kinds: what went wrong, independent of how an edge says it.

Every edge keeps one table from `Kind` to its own form (a gRPC status, an HTTP status, a
WebSocket close code), so a new edge adds one table instead of re-classifying errors.
"""

from __future__ import annotations

from enum import StrEnum

from voiceagent.v1 import converse_pb2


class Kind(StrEnum):
    INVALID = "invalid"  # the request is wrong: fix it
    TOO_LARGE = "too_large"  # over a size or length limit
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # the session has ended, or another stream is live on it
    EXHAUSTED = "exhausted"  # server full or a provider busy: retry later
    UNAVAILABLE = "unavailable"  # the database is down or the server is shutting down
    NOT_CONFIGURED = "not_configured"  # a provider role has no provider
    PROVIDER_FAILED = "provider_failed"  # a provider failed after its retries
    UNAUTHENTICATED = "unauthenticated"  # no credentials, or not valid ones
    PERMISSION_DENIED = "permission_denied"  # a known caller without the right
    RATE_LIMITED = "rate_limited"  # over a per-tenant limit: retry after `retry_after_s`


class RequestError(Exception):
    """A request the core refuses, with a message a person can act on."""

    def __init__(
        self, message: str, kind: Kind = Kind.INVALID, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after_s = retry_after_s


# ProviderError.code (the pipeline's vocabulary, also the event ErrorCode names) -> Kind.
PROVIDER_KINDS = {
    "provider_failed": Kind.PROVIDER_FAILED,
    "provider_not_configured": Kind.NOT_CONFIGURED,
    "resource_exhausted": Kind.EXHAUSTED,
    "invalid_request": Kind.INVALID,
}


def provider_kind(code: str) -> Kind:
    return PROVIDER_KINDS.get(code, Kind.PROVIDER_FAILED)


def event_error_kind(code: int) -> Kind:
    """An `error` event's ErrorCode (voiceagent.v1) -> Kind."""
    name = converse_pb2.ErrorCode.Name(code) if code in converse_pb2.ErrorCode.values() else ""
    return provider_kind(name.removeprefix("ERROR_CODE_").lower())
