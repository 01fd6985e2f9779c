"""Running a session's tool calls, so that barge-in cannot strand, repeat or drop one.

Calls run as tasks owned here, not inside the chat stage's turn work: interrupting a reply
cancels the chat stage's wait, never a side-effecting call. What a barge-in does is the tool's
declared policy (`cancel` or `finish`); a call that finishes after its turn closed is handed to
`on_late`, which puts it in the conversation so the agent answers it next. `end_call` is done
when its turn's goodbye has been heard (the session tells `hangups_heard`), or cancelled by a
barge-in before that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from pipeline.events import EventSink, tool_call_done
from pipeline.tools.lifecycle import (
    BARGE_IN,
    INCOMPLETE,
    SESSION_ENDED,
    Outcome,
    ResultRejected,
    ToolCall,
)
from pipeline.tools.spec import END_CALL, BargeIn, Runs, ToolSpec
from pipeline.tools.webhook import ToolFailed, WebhookCaller
from pipeline.turn import Turn, now

log = logging.getLogger(__name__)


class ToolRunner:
    def __init__(
        self,
        specs: Sequence[ToolSpec],
        events: EventSink,
        *,
        session_id: str,
        webhook: WebhookCaller | None = None,
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self.events, self.session_id, self.webhook = events, session_id, webhook
        self.calls: dict[str, ToolCall] = {}
        self.on_done: Callable[[ToolCall], None] | None = None  # every outcome (persistence)
        self.on_late: Callable[[ToolCall], None] | None = None  # finished after its turn closed
        self._turn_of: dict[str, Turn] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._answers: dict[str, asyncio.Future[tuple[str, str]]] = {}
        self._cancel_reason: dict[str, str] = {}
        self._hangups: dict[str, ToolCall] = {}
        self._closed = False

    def unique_id(self, call_id: str) -> str:
        """Providers reuse ids across replies (the local model, some servers): keep ours unique."""
        candidate, n = call_id, 1
        while candidate in self.calls:
            n += 1
            candidate = f"{call_id}_{n}"
        return candidate

    async def begin(self, turn: Turn, calls: Sequence[ToolCall]) -> list[asyncio.Task[None]]:
        """Request and start one model step's calls; returns what the model waits for."""
        waits: list[asyncio.Task[None]] = []
        for call in calls:
            call.call_id = self.unique_id(call.call_id)
            self.calls[call.call_id] = call
            self._turn_of[call.call_id] = turn
            await self.events.tool_call(call)
            problem = call.check_arguments()
            if problem:
                await self._finish(call, Outcome.FAILED, error=problem)
                continue
            call.start(now())
            assert call.spec is not None
            if call.spec.runs is Runs.BUILTIN and call.name == END_CALL.name:
                self._hangups[call.call_id] = call  # done once the goodbye has been heard
                continue
            task = asyncio.create_task(self._execute(call), name=f"tool:{call.call_id}")
            self._tasks[call.call_id] = task
            waits.append(task)
        return waits

    async def incomplete(self, turn: Turn, names: Sequence[str], at_step: int) -> None:
        """Calls the model had begun when its reply was cut: they never run, and say so."""
        for i, name in enumerate(names):
            call_id = self.unique_id(f"incomplete_{turn.index}_{at_step}_{i}")
            call = ToolCall(call_id, name, "", turn.index, spec=self.specs.get(name))
            call.requested_at = now()
            self.calls[call_id] = call
            self._turn_of[call_id] = turn
            # Called while the chat stage is being cancelled: never wait on the client here.
            if call.finish(Outcome.CANCELLED, now(), reason=INCOMPLETE):
                self.events.offer(tool_call_done(call))
                if self.on_done is not None:
                    self.on_done(call)

    def answer(self, call_id: str, output: str, error: str) -> None:
        """A client's result for one of its calls; ResultRejected says why it cannot apply."""
        call = self.calls.get(call_id)
        if call is None:
            raise ResultRejected(f"unknown call_id {call_id[:64]!r}: no such tool call here")
        if call.spec is None or call.spec.runs is not Runs.CLIENT:
            raise ResultRejected(f"tool call {call_id} ({call.name}) is run by the server")
        waiting = self._answers.get(call_id)
        if call.done or waiting is None or waiting.done():
            state = call.outcome.value if call.outcome else "answered"
            why = f" ({call.reason})" if call.reason else ""
            raise ResultRejected(f"tool call {call_id} is already {state}{why}; result ignored")
        waiting.set_result((output, error))

    async def barge_in(self, turn: Turn) -> None:
        """The caller interrupted `turn`: cancel what may be cancelled; the rest finishes."""
        for call_id, task in list(self._tasks.items()):
            call = self.calls[call_id]
            if (
                self._turn_of[call_id] is turn
                and call.spec
                and call.spec.barge_in is BargeIn.CANCEL
            ):
                self._cancel_reason[call_id] = BARGE_IN
                task.cancel()
        for call_id, call in list(self._hangups.items()):
            if self._turn_of[call_id] is turn:
                del self._hangups[call_id]
                await self._finish(call, Outcome.CANCELLED, reason=BARGE_IN)

    async def hangups_heard(self, turn: Turn) -> bool:
        """`turn` closed with its audio sent: its end_call calls are done. True if any."""
        due = [c for cid, c in self._hangups.items() if self._turn_of[cid] is turn]
        for call in due:
            del self._hangups[call.call_id]
            await self._finish(call, Outcome.COMPLETED, output='{"ok": true}')
        return bool(due)

    def running(self, turn: Turn) -> list[ToolCall]:
        return [self.calls[cid] for cid in self._tasks if self._turn_of[cid] is turn]

    async def aclose(self) -> None:
        """Session over: client and cancellable calls are cancelled; side-effecting server calls
        finish (bounded by their timeouts) so their outcome is stored, never lost."""
        self._closed = True
        for call_id, task in list(self._tasks.items()):
            spec = self.calls[call_id].spec
            if not (spec and spec.runs is not Runs.CLIENT and spec.barge_in is BargeIn.FINISH):
                self._cancel_reason[call_id] = SESSION_ENDED
                task.cancel()
        for call in list(self._hangups.values()):
            await self._finish(call, Outcome.CANCELLED, reason=SESSION_ENDED)
        self._hangups.clear()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _execute(self, call: ToolCall) -> None:
        assert call.spec is not None
        try:
            async with asyncio.timeout(call.spec.timeout_s):
                output = await self._run(call)
        except TimeoutError:
            limit = f"{call.spec.timeout_s:g}"
            await self._finish(call, Outcome.TIMED_OUT, error=f"no result within {limit} s")
        except asyncio.CancelledError:
            reason = self._cancel_reason.pop(call.call_id, BARGE_IN)
            await self._finish(call, Outcome.CANCELLED, reason=reason)
        except ToolFailed as exc:
            await self._finish(call, Outcome.FAILED, error=str(exc))
        except Exception as exc:  # a bug in one tool must still give the call its outcome
            log.exception("tool %s failed", call.name)
            await self._finish(call, Outcome.FAILED, error=f"tool failed: {type(exc).__name__}")
        else:
            await self._finish(call, Outcome.COMPLETED, output=output)
        finally:
            self._tasks.pop(call.call_id, None)

    async def _run(self, call: ToolCall) -> str:
        assert call.spec is not None
        if call.spec.runs is Runs.CLIENT:
            waiting = asyncio.get_running_loop().create_future()
            self._answers[call.call_id] = waiting
            output, error = await waiting
            if error:
                raise ToolFailed(error)
            return output
        if call.spec.runs is Runs.WEBHOOK:
            if self.webhook is None:
                raise ToolFailed("webhook tools are not enabled on this server")
            return await self.webhook.call(call, self.session_id)
        raise ToolFailed(f"the built-in tool {call.name} has no runner")

    async def _finish(self, call: ToolCall, outcome: Outcome, **result: str) -> None:
        if not call.finish(outcome, now(), **result):
            return
        self._answers.pop(call.call_id, None)
        if not self._closed:  # after the session, nobody reads events: never block on them
            await self.events.tool_call_done(call)
        if self.on_done is not None:
            self.on_done(call)
        turn = self._turn_of.get(call.call_id)
        kept = outcome is not Outcome.CANCELLED
        if kept and turn is not None and turn.closed and self.on_late is not None:
            self.on_late(call)
