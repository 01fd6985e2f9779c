"""Realtime `error` events: the problem raised while applying a client event, and the one
table from the core's neutral `Kind` to the Realtime error `type` and `code`."""

from __future__ import annotations

from server.sessions.errors import Kind, RequestError, event_error_kind

INVALID = "invalid_request_error"
SERVER = "server_error"

# Kind -> (type, code): how a refusal of the core reads on this edge.
KINDS: dict[Kind, tuple[str, str]] = {
    Kind.INVALID: (INVALID, "invalid_value"),
    Kind.TOO_LARGE: (INVALID, "too_large"),
    Kind.NOT_FOUND: (INVALID, "session_not_found"),
    Kind.CONFLICT: (INVALID, "session_conflict"),
    Kind.EXHAUSTED: (SERVER, "server_busy"),
    Kind.UNAVAILABLE: (SERVER, "server_unavailable"),
    Kind.NOT_CONFIGURED: (SERVER, "provider_not_configured"),
    Kind.PROVIDER_FAILED: (SERVER, "provider_failed"),
    Kind.UNAUTHENTICATED: (INVALID, "invalid_api_key"),
    Kind.PERMISSION_DENIED: (INVALID, "permission_denied"),
    Kind.RATE_LIMITED: (INVALID, "rate_limit_exceeded"),
}


class Problem(Exception):
    """A client event that cannot be applied (or only partly): one `error` event."""

    def __init__(
        self,
        message: str,
        code: str = "invalid_value",
        param: str | None = None,
        *,
        kind: str = INVALID,
    ) -> None:
        super().__init__(message)
        self.code, self.param, self.kind = code, param, kind


def unknown_field(param: str) -> Problem:
    return Problem(f"Unknown parameter: '{param}'.", "unknown_parameter", param)


def unsupported_field(param: str, why: str = "") -> Problem:
    suffix = f": {why}" if why else ""
    return Problem(
        f"Unsupported parameter: '{param}' is not supported by this server{suffix}.",
        "unsupported_parameter",
        param,
    )


def from_request_error(exc: RequestError) -> Problem:
    kind, code = KINDS.get(exc.kind, (INVALID, "invalid_value"))
    return Problem(str(exc), code, kind=kind)


def from_pipeline_error(code: int, message: str) -> Problem:
    """A session `error` event (a provider failed, ...) as a Realtime error."""
    kind, name = KINDS.get(event_error_kind(code), (SERVER, "server_error"))
    return Problem(message, name, kind=kind)


def event(problem: Problem, event_id: str, client_event_id: str | None) -> dict:
    return {
        "type": "error",
        "event_id": event_id,
        "error": {
            "type": problem.kind,
            "code": problem.code,
            "message": str(problem),
            "param": problem.param,
            "event_id": client_event_id,
        },
    }
