"""The ToolRunner's races, driven directly (real EventSink, real Conversation): outcomes and
history never depend on whether the client reads its events."""

from __future__ import annotations

import asyncio

from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.tools.lifecycle import Outcome, ToolCall
from pipeline.tools.runner import ToolRunner
from pipeline.tools.spec import parse_tools
from pipeline.turn import ToolStep, Turn

[BOOK] = parse_tools([{"name": "book", "runs": "client", "barge_in": "finish"}])


def setup(maxsize: int = 4) -> tuple[ToolRunner, EventSink, Conversation, Turn, list[ToolCall]]:
    events = EventSink(maxsize=maxsize)
    runner = ToolRunner([BOOK], events, session_id="s")
    conversation = Conversation("sys")
    turn = conversation.open_turn("book it", 0.0)
    stored: list[ToolCall] = []
    runner.on_done = stored.append
    runner.on_late = conversation.add_late_result
    return runner, events, conversation, turn, stored


async def test_outcome_and_history_do_not_wait_for_a_client_that_reads_nothing():
    runner, events, conversation, turn, stored = setup()
    call = ToolCall("c1", "book", "{}", turn.index, spec=BOOK)
    turn.steps.append(ToolStep(0, [call]))
    [task] = await runner.begin(turn, [call])
    while not events.queue.full():  # the client stopped reading
        events.queue.put_nowait(None)
    await runner.barge_in(turn)  # a finish-policy call keeps running
    conversation.close_turn(turn)
    runner.answer("c1", '{"ok": 1}', "")  # its result comes after the turn closed
    await asyncio.wait_for(task, 10)
    assert call.outcome is Outcome.COMPLETED and stored == [call]
    ids = [m.tool_call_id for m in conversation.history if m.role == "tool"]
    assert ids == ["c1"]  # in history once (late), not twice
    assert conversation.unanswered
    await asyncio.wait_for(runner.aclose(), 10)


async def test_a_result_already_given_wins_over_a_barge_in_cancel():
    [weather] = parse_tools([{"name": "w", "runs": "client", "barge_in": "cancel"}])
    events = EventSink()
    runner = ToolRunner([weather], events, session_id="s")
    turn = Conversation().open_turn("q", 0.0)
    call = ToolCall("c1", "w", "{}", turn.index, spec=weather)
    [task] = await runner.begin(turn, [call])
    runner.answer("c1", '"sun"', "")
    await runner.barge_in(turn)  # same tick: the answer is in, so it completes
    await task
    assert call.outcome is Outcome.COMPLETED and call.output == '"sun"'


async def test_ids_already_in_history_are_not_reused():
    runner, *_ = setup()
    runner.known_ids = {"call_0"}
    assert runner.unique_id("call_0") == "call_0_2"
