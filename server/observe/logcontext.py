"""What a log line knows about the session it was logged in: session id, turn, edge, tenant.

Why a context variable: a session's work runs in many tasks (the edge's handler, one per
pipeline stage, one per turn item), and asyncio copies the context into every task when it
is created. So binding the session once, in the task that opens it and before its stages
start, labels every line logged by any of them, without passing ids through the pipeline.
The turn changes during the session, so it is read when the line is logged (the turn in
flight, or none). server/logs.py puts these fields on each record.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass


def _no_turn() -> int | None:
    return None


@dataclass(frozen=True)
class LogContext:
    session_id: str
    edge: str = ""
    tenant: str = ""
    turn: Callable[[], int | None] = _no_turn  # the turn in flight when a line is logged


_CURRENT: ContextVar[LogContext | None] = ContextVar("voiceagent_log_context", default=None)
EMPTY = {"session_id": None, "turn": None, "edge": None, "tenant": None}


def bind(context: LogContext) -> None:
    """Label what this task (and every task it creates from now on) logs with `context`.

    Not undone when the session ends: the tasks that run a session (an RPC, a request, a
    socket) end with it, and what they log after it closed is still about it."""
    _CURRENT.set(context)


def current() -> LogContext | None:
    return _CURRENT.get()


def fields() -> dict[str, object]:
    """The four fields for a log line (None outside a session)."""
    context = _CURRENT.get()
    if context is None:
        return dict(EMPTY)
    try:
        turn = context.turn()
    except Exception:  # a log line must never fail because of its labels
        turn = None
    return {
        "session_id": context.session_id,
        "turn": turn,
        "edge": context.edge or None,
        "tenant": context.tenant or None,
    }
