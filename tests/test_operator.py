"""Pipeline stages: ordering, END propagation, backpressure, per-turn cancellation, resilience."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pipeline.frames import END, Sentence
from pipeline.operator import Operator, TurnOperator
from pipeline.turn import Turn

TIMEOUT = 2.0  # generous bound for things that must happen; never used to wait for them


class Doubler(Operator[int]):
    async def handle(self, item: int) -> None:
        await self.forward(item * 2)


class Collector(Operator[int]):
    def __init__(self) -> None:
        super().__init__()
        self.items: list[int] = []
        self.finished = False

    async def handle(self, item: int) -> None:
        if item < 0:
            raise ValueError(f"negative item {item}")
        self.items.append(item)

    async def finish(self) -> None:
        self.finished = True


class Gated(Operator[int]):
    """Blocks in handle until `release` is set; `entered` tells a handler is running."""

    inbox_size = 2

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.handled: list[int] = []

    async def handle(self, item: int) -> None:
        self.entered.set()
        await self.release.wait()
        self.handled.append(item)


class Speaker(TurnOperator):
    """Items of turn 1 block forever (until cancelled); others finish at once."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.log: list[str] = []

    async def handle(self, item: Sentence) -> None:
        self.log.append(f"start {item.text}")
        if item.text == "boom":
            raise RuntimeError("tts exploded")
        if item.turn.index == 1:
            self.entered.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.log.append(f"cancelled {item.text}")
                raise
        self.log.append(f"done {item.text}")


def turn(index: int) -> Turn:
    return Turn(index=index, user_text=f"user {index}", speech_end_at=0.0)


async def test_chain_passes_items_in_order_and_end_stops_both():
    collector = Collector()
    doubler = Doubler(collector)
    tasks = [asyncio.create_task(op.run()) for op in (doubler, collector)]
    for i in range(1, 6):
        await doubler.put(i)
    await doubler.put(END)
    await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    assert collector.items == [2, 4, 6, 8, 10]
    assert collector.finished


async def test_full_inbox_makes_the_producer_wait():
    op = Gated()
    task = asyncio.create_task(op.run())
    await op.put(1)
    await asyncio.wait_for(op.entered.wait(), TIMEOUT)  # 1 is being handled, inbox empty
    await op.put(2)
    await op.put(3)
    assert op.inbox.full()
    fourth = asyncio.create_task(op.put(4))
    done, _ = await asyncio.wait({fourth}, timeout=0.1)
    assert not done, "a 4th item got in while the handler was blocked and the inbox full"

    op.release.set()
    await asyncio.wait_for(fourth, TIMEOUT)
    await op.put(END)
    await asyncio.wait_for(task, TIMEOUT)
    assert op.handled == [1, 2, 3, 4]


async def test_put_with_timeout_fails_then_succeeds_after_release():
    op = Gated()
    task = asyncio.create_task(op.run())
    for i in (1, 2, 3):
        await op.put(i)
    await asyncio.wait_for(op.entered.wait(), TIMEOUT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(op.put(4), 0.05)
    op.release.set()
    await asyncio.wait_for(op.put(4), TIMEOUT)
    await op.put(END)
    await asyncio.wait_for(task, TIMEOUT)
    assert op.handled == [1, 2, 3, 4]  # the timed-out put left nothing behind


async def test_cancel_turn_stops_in_flight_item_and_operator_carries_on():
    op = Speaker()
    task = asyncio.create_task(op.run())
    first, second = turn(1), turn(2)
    await op.put(Sentence(first, "one"))
    await asyncio.wait_for(op.entered.wait(), TIMEOUT)

    op.cancel_turn(second)  # not the turn in flight: no effect
    op.cancel_turn(first)
    await op.put(Sentence(second, "two"))
    await op.put(END)
    await asyncio.wait_for(task, TIMEOUT)
    assert not task.cancelled()
    assert op.log == ["start one", "cancelled one", "start two", "done two"]


async def test_queued_items_of_an_interrupted_turn_are_skipped():
    op = Speaker()
    task = asyncio.create_task(op.run())
    first, second = turn(1), turn(2)
    await op.put(Sentence(first, "one"))
    await asyncio.wait_for(op.entered.wait(), TIMEOUT)
    await op.put(Sentence(first, "one-b"))
    await op.put(Sentence(first, "one-c"))
    await op.put(Sentence(second, "two"))

    first.interrupted = True
    op.cancel_turn(first)
    await op.put(END)
    await asyncio.wait_for(task, TIMEOUT)
    assert op.log == ["start one", "cancelled one", "start two", "done two"]


async def test_items_of_an_already_interrupted_turn_never_start():
    op = Speaker()
    old, new = turn(3), turn(4)
    old.interrupted = True
    for item in (Sentence(old, "stale"), Sentence(new, "fresh"), Sentence(old, "stale2"), END):
        await op.put(item)
    await asyncio.wait_for(op.run(), TIMEOUT)
    assert op.log == ["start fresh", "done fresh"]


async def test_exception_in_handle_is_logged_and_operator_keeps_going(caplog):
    collector = Collector()
    task = asyncio.create_task(collector.run())
    with caplog.at_level(logging.ERROR, logger="pipeline.operator"):
        for item in (1, -2, 3, END):
            await collector.put(item)
        await asyncio.wait_for(task, TIMEOUT)
    assert collector.items == [1, 3]
    assert collector.finished
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "Collector" in errors[0].getMessage()
    assert errors[0].exc_info is not None and "negative item -2" in str(errors[0].exc_info[1])


async def test_exception_in_turn_operator_is_logged_and_next_item_handled(caplog):
    op = Speaker()
    t = turn(2)
    with caplog.at_level(logging.ERROR, logger="pipeline.operator"):
        for item in (Sentence(t, "boom"), Sentence(t, "after"), END):
            await op.put(item)
        await asyncio.wait_for(op.run(), TIMEOUT)
    assert op.log == ["start boom", "start after", "done after"]
    assert any("tts exploded" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_cancelling_the_stage_cancels_its_in_flight_item():
    op = Speaker()
    task = asyncio.create_task(op.run())
    await op.put(Sentence(turn(1), "one"))
    await asyncio.wait_for(op.entered.wait(), TIMEOUT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert task.cancelled()
    assert op.log == ["start one", "cancelled one"]
