"""The process's log output: text for people (the default) or one JSON object per line.

Why here: `python -m server` configures logging once (LOG_FORMAT, LOG_LEVEL) through
`install`, instead of a bare basicConfig. Every line, in either format, is stamped by
`SessionFields` with the session it was logged in (server/observe/logcontext.py: session_id,
turn, edge, tenant; None outside a session); the JSON form carries them as keys, for log
stores that index fields. Secrets stay out: the redaction filter on uvicorn's loggers
(server/http/redact.py) has already rewritten the record before any handler formats it, and
the JSON formatter redacts the final message and traceback again, whatever logger they came
from.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from server.http.redact import redact
from server.observe import logcontext

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("session_id", "turn", "edge", "tenant")
LogFormat = Literal["text", "json"]


class SessionFields(logging.Filter):
    """Puts the current session's fields on the record (unless a caller set them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.fields().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the session
    fields, and `exception` / `stack` when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for name in FIELDS:
            line[name] = getattr(record, name, None)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


def handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in `log_format`, stamping session fields."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    out.addFilter(SessionFields())
    return out


def install(level: str, log_format: LogFormat) -> None:
    """The root logger writes to stderr in `log_format` at `level` (replacing its handlers)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(log_format))
    root.setLevel(level.upper())
