"""Scripted misbehaviour for the fake OpenAI server, and errors in OpenAI's own shape."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),  # (type, code) as OpenAI sends
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by a single request (see ``FakeOpenAI.inject``)."""

    kind: str  # "status" | "stall" | "drop" | "drop_mid_stream"
    code: int = 0
    retry_after: float | None = None
    message: str = "injected"
    after_chunks: int = 0

    @classmethod
    def status(cls, code: int, retry_after: float | None = None, message: str = "injected"):
        """Reply with an OpenAI-shaped error; ``retry_after`` sets Retry-After + retry-after-ms."""
        return cls("status", code=code, retry_after=retry_after, message=message)

    @classmethod
    def stall(cls):
        """Never answer (until ``stop()``): exercises client timeouts."""
        return cls("stall")

    @classmethod
    def drop(cls):
        """Close the TCP connection without any response: a connection error for the client."""
        return cls("drop")

    @classmethod
    def drop_mid_stream(cls, after_chunks: int):
        """Send ``after_chunks`` body chunks, then close; non-streamed replies act as drop()."""
        return cls("drop_mid_stream", after_chunks=after_chunks)


def openai_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    """An error response in OpenAI's shape, which the SDK turns into ``APIStatusError``s."""
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    etype, code = _ERROR_KINDS.get(status, default)
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)
