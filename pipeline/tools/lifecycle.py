"""One tool call's lifecycle as a plain state machine: requested -> running -> one outcome.

Every failure peers report comes from a call that ends twice or never: a result applied after
the call was cancelled, a call stuck "in progress", a result dropped. Here a call has exactly
one terminal outcome, set once; whatever arrives after it is refused with a reason. The
assembler turns the model's streamed tool-call deltas into complete calls, so a reply cut
before a call was complete yields no runnable call.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from jsonschema import Draft202012Validator

from pipeline.tools.spec import ToolSpec


class Phase(enum.StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    DONE = "done"


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


# Why a call was cancelled (stored and sent with the outcome).
INCOMPLETE = "interrupted before the call was complete"
BARGE_IN = "barge-in"
SESSION_ENDED = "session ended"


class ResultRejected(ValueError):
    """A tool result that cannot be applied (unknown call, already finished, not the client's)."""


@dataclass
class ToolCall:
    call_id: str
    name: str
    arguments: str  # JSON text, as the model produced it
    turn_index: int
    _: KW_ONLY
    spec: ToolSpec | None = None  # None: the model named a tool the session does not have
    phase: Phase = Phase.REQUESTED
    outcome: Outcome | None = None
    output: str = ""  # the result given to the model (JSON text or plain text)
    error: str = ""
    reason: str = ""  # for cancelled: why
    requested_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def start(self, at: float) -> None:
        if self.phase is not Phase.REQUESTED:
            raise RuntimeError(f"tool call {self.call_id} started twice")
        self.phase, self.started_at = Phase.RUNNING, at

    def finish(
        self,
        outcome: Outcome,
        at: float,
        *,
        output: str = "",
        error: str = "",
        reason: str = "",
    ) -> bool:
        """Set the one outcome; False (and nothing changes) if the call already has one."""
        if self.phase is Phase.DONE:
            return False
        self.phase, self.outcome, self.finished_at = Phase.DONE, outcome, at
        self.output, self.error, self.reason = output, error, reason
        return True

    @property
    def duration_ms(self) -> int:
        if self.finished_at is None:
            return -1
        start = self.started_at if self.started_at is not None else self.requested_at
        return max(0, round((self.finished_at - start) * 1000))

    @property
    def ran(self) -> bool:
        """It started running, so its side effects may have happened."""
        return self.started_at is not None

    def result_for_model(self) -> str:
        """What the model is told this call returned (it must see failures too)."""
        if self.outcome is Outcome.COMPLETED:
            return self.output
        if self.outcome is Outcome.TIMED_OUT:
            return json.dumps({"error": f"the tool {self.name} timed out"})
        return json.dumps({"error": self.error or f"the tool {self.name} failed"})

    def check_arguments(self) -> str:
        """'' if the arguments are a JSON object valid for the tool's schema, else why not."""
        if self.spec is None:
            return f"no tool named {self.name!r} in this session"
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError as exc:
            return f"arguments are not valid JSON: {exc}"
        if not isinstance(value, dict):
            return "arguments must be a JSON object"
        errors = sorted(Draft202012Validator(self.spec.parameters).iter_errors(value), key=str)
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            return f"arguments do not match the schema: {errors[0].message} (at /{where})"
        return ""


@dataclass
class _Partial:
    call_id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed tool call, as providers yield them (OpenAI's delta shape)."""

    index: int
    call_id: str = ""
    name: str = ""
    arguments: str = ""


class CallAssembler:
    """Streamed deltas -> complete calls once the model's reply has ended."""

    def __init__(self) -> None:
        self._parts: dict[int, _Partial] = {}

    def push(self, delta: ToolCallDelta) -> None:
        part = self._parts.setdefault(delta.index, _Partial())
        part.call_id = part.call_id or delta.call_id
        part.name += delta.name
        part.arguments.append(delta.arguments)

    @property
    def pending(self) -> bool:
        return bool(self._parts)

    def names(self) -> list[str]:
        return [p.name for _, p in sorted(self._parts.items())]

    def complete(
        self, specs: Mapping[str, ToolSpec], turn_index: int, at: float, fallback_id: str
    ) -> list[ToolCall]:
        """The calls of a finished reply; ids are made up where the provider gave none."""
        calls = []
        for i, (_, part) in enumerate(sorted(self._parts.items())):
            calls.append(
                ToolCall(
                    part.call_id or f"{fallback_id}_{i}",
                    part.name,
                    "".join(part.arguments) or "{}",
                    turn_index,
                    spec=specs.get(part.name),
                    requested_at=at,
                )
            )
        self._parts.clear()
        return calls


def parse_result(output: Any, error: Any) -> tuple[str, str]:
    """A client's tool_result fields -> (output, error); exactly one must be given."""
    if (output is None) == (error is None):
        raise ResultRejected("a tool result needs exactly one of output or error")
    if error is not None:
        if not isinstance(error, str) or not error.strip():
            raise ResultRejected("error must be a non-empty string")
        return "", error
    if isinstance(output, str):
        return output, ""
    try:
        return json.dumps(output), ""
    except (TypeError, ValueError):
        raise ResultRejected("output must be a string or JSON value") from None
