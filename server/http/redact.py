"""Secrets out of uvicorn's logs.

uvicorn logs every request line with its query string: the access log ("uvicorn.access") for
HTTP, "uvicorn.error" for WebSocket handshakes (and the `websockets` library's debug lines).
Browsers cannot set headers on a WebSocket, so they pass a short-lived token in its URL
(`/ws/voice-agent/{id}?token=...`); that token, or a key a client put in a query string, must
not end up in log files. `install()` puts a filter on both loggers that replaces the value of
those query parameters with "[redacted]" before any handler formats the record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

SECRET_PARAMS = ("token", "key", "api_key", "access_token", "client_secret")
REDACTED = "[redacted]"
LOGGERS = ("uvicorn.access", "uvicorn.error")
_NAMES = "|".join(map(re.escape, SECRET_PARAMS))
_SECRET = re.compile(rf"([?&](?:{_NAMES})=)[^&#\s\"']*", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with the value of every secret query parameter replaced."""
    return _SECRET.sub(rf"\g<1>{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Redacts the record's string arguments (uvicorn passes the path and query as one), or
    its message when it has none; the arguments stay a tuple for formatters that unpack it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        elif isinstance(args, Mapping) and args:
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in args.items()}
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def install() -> None:
    """Once per process, however many servers start."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
