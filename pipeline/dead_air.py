"""Dead-air detection as plain, synchronous logic: given timestamps and state, what is stuck.

The recurring production failure of a voice agent is silence nobody notices: a speech-to-text
request that never returns keeps the user's turn open forever, a chat stream that sends no
token, text-to-speech that sends no bytes, a send to the client that blocks. Nothing errors and
nothing is logged; the caller just hears nothing. `DeadAirDetector` decides, from a snapshot
the session's watchdog (`pipeline.watchdog`) takes every tick, which of two rules is broken:

- reply: the agent owes a reply (the user's turn closed) and no agent audio has gone out for
  `reply_s`;
- stage: a stage holds work and has made no progress (no transcript, no token, no audio bytes,
  no event taken by the client) for `stage_s`.

Each stall is reported once: per episode (a turn, or an utterance still being transcribed) and
stage; the reply rule at most once per episode, and not after a stage stall of that episode. No asyncio here, so the rules are unit-tested with
made-up clocks, like `pipeline.vad`'s state machine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

# Stages that can hold a reply's work, in data-path order: a later one is nearer the ear, so
# when several hold work for one reply, the last is what the reply waits on.
STAGES = ("stt", "chat", "tts", "output")
PIPELINE = "pipeline"  # a reply is overdue and no stage holds its work: it was lost on the way

_STUCK = {
    "stt": "no transcript",
    "chat": "no token from the chat model",
    "tts": "no audio from text-to-speech",
    "output": "the client took no events",
}


@dataclass(frozen=True)
class DeadAirParams:
    """Thresholds in seconds (0 turns a rule off) and the line said after a stall ("" = none)."""

    reply_s: float = 8.0
    stage_s: float = 8.0
    recovery_text: str = ""

    @property
    def enabled(self) -> bool:
        return self.reply_s > 0 or self.stage_s > 0

    @property
    def tick_s(self) -> float:
        """How often to look: a quarter of the shortest threshold, within 50 ms .. 1 s."""
        shortest = min(s for s in (self.reply_s, self.stage_s) if s > 0)
        return min(1.0, max(0.05, shortest / 4))


@dataclass(frozen=True)
class Work:
    """A stage holding work of `episode`. `waiting`: it is waiting on something outside the
    pipeline (its provider, or the client), without progress since `since` (request sent, or
    the last token or bytes received). Not waiting: the stage is busy with what it got (for
    instance held up by backpressure from the stage after it): not its stall, but still where
    a reply is."""

    stage: str
    episode: Hashable
    since: float
    waiting: bool = True


@dataclass(frozen=True)
class Owed:
    """A reply the agent owes for `episode` since `since` (when the user's turn closed)."""

    episode: Hashable
    since: float


@dataclass(frozen=True)
class Stall:
    """A broken rule: `stage` is what the session waits on; `for_s` how long it has."""

    rule: str  # "reply" | "stage"
    stage: str  # one of STAGES, or PIPELINE
    episode: Hashable
    for_s: float

    def describe(self) -> str:
        """E.g. "dead air in chat: no token from the chat model for 8.0 s"."""
        if self.rule == "reply":
            what = f"no agent audio {self.for_s:.1f} s after the user's turn"
        else:
            what = f"{_STUCK.get(self.stage, 'no progress')} for {self.for_s:.1f} s"
        return f"dead air in {self.stage}: {what}"


class DeadAirDetector:
    """Feeds snapshots; returns the stalls not reported before. Keeps only what it reported."""

    def __init__(self, params: DeadAirParams, memory: int = 64) -> None:
        self.params = params
        # (episode, stage or "reply") already reported; episodes only grow, so a short memory
        # of the latest is enough.
        self._reported: deque[tuple[Hashable, str]] = deque(maxlen=memory)

    def reported(self, episode: Hashable, what: str) -> bool:
        return (episode, what) in self._reported

    def check(self, at: float, owed: Owed | None, work: Iterable[Work]) -> list[Stall]:
        """What is stuck at monotonic time `at`, given the reply owed (if any) and the stages
        holding work. A stall is returned once; later calls stay quiet about it."""
        work = list(work)
        stalls: list[Stall] = []
        if self.params.stage_s > 0:
            for w in work:
                idle = at - w.since
                if not w.waiting or idle < self.params.stage_s:
                    continue
                if not self.reported(w.episode, w.stage):
                    stalls.append(Stall("stage", w.stage, w.episode, idle))
                    self._remember(w.episode, w.stage)
        if owed is not None and self.params.reply_s > 0:
            waited = at - owed.since
            if waited >= self.params.reply_s and not self.reported(owed.episode, "reply"):
                # One incident per reply: not after a stage stall of this episode was reported.
                already = any(episode == owed.episode for episode, _ in self._reported)
                self._remember(owed.episode, "reply")
                if not already:
                    stage = waited_on(owed.episode, work)
                    stalls.append(Stall("reply", stage, owed.episode, waited))
                    self._remember(owed.episode, stage)
        return stalls

    def _remember(self, episode: Hashable, what: str) -> None:
        self._reported.append((episode, what))


def waited_on(episode: Hashable, work: Iterable[Work]) -> str:
    """The stage a reply waits on: the one nearest the ear that holds its work (waiting or
    busy with it)."""
    held = [w.stage for w in work if w.episode == episode and w.stage in STAGES]
    return max(held, key=STAGES.index) if held else PIPELINE
