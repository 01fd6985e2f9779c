"""The operator: one pipeline stage, one task, one bounded inbox.

Stages talk only through bounded queues, so a slow stage makes its producer wait (backpressure)
instead of letting memory grow. Work that belongs to an agent turn (chat, TTS, audio output)
runs in `TurnOperator`s, whose current item can be cancelled when that turn is interrupted,
while the stage itself keeps running for the next turn. Closing a session cancels every
stage's task, which cancels whatever each is awaiting: provider calls, queue puts, pacing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from typing import Any, Generic, TypeVar

from pipeline.frames import END, TurnItem
from pipeline.turn import Turn

log = logging.getLogger(__name__)

T = TypeVar("T")


class Operator(ABC, Generic[T]):
    """A stage: takes items from its inbox in order and handles them one at a time."""

    inbox_size = 32

    def __init__(self, downstream: Operator[Any] | None = None) -> None:
        self.inbox: asyncio.Queue[T | object] = asyncio.Queue(self.inbox_size)
        self.downstream = downstream
        self.working = False  # an item is being handled (the inbox alone doesn't show it)

    @property
    def name(self) -> str:
        return type(self).__name__

    async def put(self, item: T | object) -> None:
        try:
            self.inbox.put_nowait(item)  # the common case: room in the inbox, no suspension
        except asyncio.QueueFull:
            await self.inbox.put(item)  # backpressure: wait for the stage to catch up

    async def forward(self, item: Any) -> None:
        if self.downstream is not None:
            await self.downstream.put(item)

    async def run(self) -> None:
        while True:
            item = await self.inbox.get()
            if item is END:
                await self.finish()
                await self.forward(END)
                return
            self.working = True
            try:
                await self.dispatch(item)  # type: ignore[arg-type]
            finally:
                self.working = False

    async def dispatch(self, item: T) -> None:
        try:
            await self.handle(item)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in one item must not kill the session's stage
            log.exception("%s failed on %s", self.name, type(item).__name__)

    @abstractmethod
    async def handle(self, item: T) -> None: ...

    async def finish(self) -> None:
        """End of input reached this stage: flush what it holds."""


class TurnOperator(Operator[TurnItem]):
    """A stage whose items belong to agent turns; an interrupted turn's work is dropped."""

    def __init__(self, downstream: Operator[Any] | None = None) -> None:
        super().__init__(downstream)
        self._current: tuple[Turn, asyncio.Task[None]] | None = None

    async def dispatch(self, item: TurnItem) -> None:
        if item.turn.interrupted:
            return  # queued before the interruption; nobody wants it now
        task = asyncio.create_task(super().dispatch(item), name=f"{self.name}:{item.turn.index}")
        self._current = (item.turn, task)
        try:
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                task.cancel()
                raise  # the stage itself is being stopped
            # only the item was cancelled: its turn was interrupted; carry on
        finally:
            self._current = None

    def cancel_turn(self, turn: Turn) -> None:
        """Stop work on `turn` now; its queued items are skipped when they come up."""
        if self._current is not None and self._current[0] is turn:
            self._current[1].cancel()
