"""Pipeline overhead floor: the real operator chain against bare asyncio.Queue hops.

Three chains of the same depth carry the same 640-byte frames (20 ms of 16 kHz audio):
`Operator` subclasses (the audio path's stage type), `TurnOperator` subclasses (agent-turn
stages, which run each item in a task of its own), and plain tasks moving items between
asyncio.Queues of the same size. Stages cost nothing, so what is measured is the framework.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pipeline.frames import AgentAudio, TurnItem
from pipeline.operator import Operator, TurnOperator
from pipeline.turn import SpokenSentence, Turn

DEPTH = 4
FRAME = bytes(640)
QUEUE_SIZE = Operator.inbox_size
Arrive = Callable[[Any], None]


class PassThrough(Operator[Any]):
    async def handle(self, item: Any) -> None:
        await self.forward(item)


class TurnPassThrough(TurnOperator):
    async def handle(self, item: TurnItem) -> None:  # type: ignore[override]
        await self.forward(item)


class _Last(Operator[Any]):
    """The last stage: instead of forwarding, reports the arrival."""

    def __init__(self, arrive: Arrive) -> None:
        super().__init__(None)
        self.arrive = arrive

    async def handle(self, item: Any) -> None:
        self.arrive(item)


class _TurnLast(TurnOperator):
    def __init__(self, arrive: Arrive) -> None:
        super().__init__(None)
        self.arrive = arrive

    async def handle(self, item: TurnItem) -> None:  # type: ignore[override]
        self.arrive(item)


class Chain:
    """A started chain of DEPTH stages: `put` feeds the first; `arrive` sees the last's items."""

    def __init__(self, kind: str, arrive: Arrive) -> None:
        self.kind = kind
        self.tasks: list[asyncio.Task[None]] = []
        if kind == "queue":
            queues: list[asyncio.Queue[Any]] = [asyncio.Queue(QUEUE_SIZE) for _ in range(DEPTH)]
            self.put = queues[0].put
            for i in range(DEPTH):
                nxt = queues[i + 1].put if i + 1 < DEPTH else None
                self.tasks.append(asyncio.create_task(_hop(queues[i], nxt, arrive)))
            return
        middle, last = (PassThrough, _Last) if kind == "operator" else (TurnPassThrough, _TurnLast)
        stage: Operator[Any] = last(arrive)
        stages = [stage]
        for _ in range(DEPTH - 1):
            stage = middle(stage)
            stages.append(stage)
        self.put = stage.put
        self.tasks = [asyncio.create_task(s.run()) for s in stages]

    def item(self) -> Any:
        """What flows: raw frames, or (for turn stages) agent audio of a live turn."""
        return FRAME if self.kind != "turn" else _TURN_FRAME

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


_TURN_FRAME = AgentAudio(
    Turn(index=1, user_text="", speech_end_at=0.0), FRAME, SpokenSentence("", 0.0)
)


async def _hop(inbox: asyncio.Queue[Any], put: Callable | None, arrive: Arrive) -> None:
    while True:
        item = await inbox.get()
        if put is None:
            arrive(item)
        else:
            await put(item)


async def paced_latencies(kinds: list[str], frames: int, warmup: int) -> dict[str, list[float]]:
    """Per-frame latency (us) from the put into the first stage to the last stage's handling,
    one frame per chain every 20 ms on an absolute schedule.

    The chains take turns inside each 20 ms slot (offset by 20/len(kinds) ms), so they see the
    same machine at the same moments without sharing a slot."""
    arrived: dict[str, asyncio.Future[float]] = {}

    def arrive(kind: str) -> Arrive:
        return lambda _: arrived[kind].set_result(time.perf_counter())

    chains = {k: Chain(k, arrive(k)) for k in kinds}
    out: dict[str, list[float]] = {k: [] for k in kinds}
    step = 0.020 / len(kinds)
    t0 = time.perf_counter() + 0.05
    try:
        for i in range(warmup + frames):
            for j, kind in enumerate(kinds):
                scheduled = t0 + i * 0.020 + j * step
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                chain = chains[kind]
                item = chain.item()
                arrived[kind] = asyncio.get_running_loop().create_future()
                sent = time.perf_counter()
                await chain.put(item)
                at = await asyncio.wait_for(arrived[kind], 5.0)
                if i >= warmup:
                    out[kind].append((at - sent) * 1e6)
    finally:
        for chain in chains.values():
            await chain.close()
    return out


async def max_rate(kind: str, frames: int) -> float:
    """Frames per second pushed through the chain as fast as its queues let the producer."""
    count = 0
    done = asyncio.Event()
    target = frames

    def arrive(_: Any) -> None:
        nonlocal count
        count += 1
        if count == target:
            done.set()

    chain = Chain(kind, arrive)
    try:
        warm = max(1, frames // 10)
        for phase, n in (("warmup", warm), ("measure", frames)):
            count, target = 0, n
            done.clear()
            start = time.perf_counter()
            item = chain.item()
            for _ in range(n):
                await chain.put(item)
            await asyncio.wait_for(done.wait(), 60.0)
            elapsed = time.perf_counter() - start
            if phase == "measure":
                return n / elapsed
    finally:
        await chain.close()
    raise AssertionError("unreachable")
