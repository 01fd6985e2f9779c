"""The dead-air watchdog of one live session: notice silence, say so, end it, carry on.

Dead air is the failure nobody reports: a provider request that never returns, a send to a
client that never drains. The session just goes quiet, with no error and no log line. Every
tick the watchdog takes a snapshot of its session (the reply owed, the provider requests in
flight from `pipeline.watched`, the client's event queue) and asks `DeadAirDetector`
(`pipeline.dead_air`, plain logic) what is stuck. For each stall, once:

- a warning is logged naming the session and the stage, and `on_dead_air(stage)` is called
  (the metrics hook);
- the stuck work is cancelled: a provider request is aborted, so its stage reports it like
  any provider failure (an `error` event with ERROR_CODE_DEAD_AIR, its turn ends); anything
  else (the client not taking events, a reply lost between stages) is cut like a barge-in,
  after the watchdog's own `error` event;
- with a recovery text configured, the agent says it as a turn of its own once the stalled
  work has ended, so the caller knows to go on.

The session stays open and its next turn runs normally.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

from pipeline.dead_air import PIPELINE, DeadAirDetector, DeadAirParams, Owed, Stall, Work
from pipeline.frames import EndOfTurn, Sentence
from pipeline.session import VoiceSession
from pipeline.text import clean_for_speech
from pipeline.vad import VadState
from pipeline.watched import (
    DEAD_AIR,
    Call,
    ProviderWatch,
    WatchedChat,
    WatchedSpeechToText,
    WatchedTextToSpeech,
)

log = logging.getLogger(__name__)
OnDeadAir = Callable[[str], None]
SEND_TIMEOUT_S = 1.0  # the client may be what is stuck: never wait on it for long


class DeadAirCounts:
    """The default `on_dead_air` hook: stalls counted per stage, in this process, and passed
    on to `then` (the server's metrics) when given."""

    def __init__(self, then: Callable[[str], None] | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self.then = then

    def __call__(self, stage: str) -> None:
        self.counts[stage] += 1
        if self.then is not None:
            self.then(stage)


def watch_providers(session: VoiceSession) -> ProviderWatch:
    """Wrap the session's providers, on its stages, so their requests can be watched."""
    watch = ProviderWatch()
    session.stt.stt = WatchedSpeechToText(session.stt.stt, watch)
    session.chat.chat = WatchedChat(session.chat.chat, watch)
    session.tts.tts = WatchedTextToSpeech(session.tts.tts, watch)
    return watch


class DeadAirWatchdog:
    def __init__(
        self, session: VoiceSession, params: DeadAirParams, on_dead_air: OnDeadAir | None = None
    ) -> None:
        self.session, self.params, self.on_dead_air = session, params, on_dead_air
        self.detector = DeadAirDetector(params)
        self.watch = watch_providers(session)
        self._full_since: float | None = None  # the client's event queue has been full since
        # After a stall: (its episode, the next turn index then) until the recovery line is said.
        self._recover: tuple[Hashable, int] | None = None
        self._recovery_turns: set[int] = set()

    @classmethod
    def start(
        cls, session: VoiceSession, params: DeadAirParams, on_dead_air: OnDeadAir | None = None
    ) -> asyncio.Task[None] | None:
        """Watch `session` (call before its stages first run); None when both rules are off.
        Cancel the task when the session ends."""
        if not params.enabled:
            return None
        dog = cls(session, params, on_dead_air)
        return asyncio.create_task(dog.run(), name=f"dead-air:{session.id}")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.params.tick_s)
            try:
                await self.tick(time.monotonic())
            except Exception:  # the watchdog must never be what takes a session down
                log.exception("dead-air watchdog of session %s failed", self.session.id)

    async def tick(self, at: float) -> list[Stall]:
        owed, work = self.snapshot(at)
        stalls = self.detector.check(at, owed, work)
        for stall in stalls:
            await self.report(stall)
        if self._recover is not None:
            await self._maybe_recover()
        return stalls

    def snapshot(self, at: float) -> tuple[Owed | None, list[Work]]:
        """The reply owed (if any) and the work held, as the detector takes them."""
        session = self.session
        turn = session.conversation.live
        if turn is not None and turn.closed:
            turn = None
        work = []
        for call in list(self.watch.calls.values()):
            waiting = call.waiting_since is not None
            since = call.waiting_since if call.waiting_since is not None else call.started_at
            if call.stage == "stt":
                work.append(Work("stt", ("utterance", call.seq), since, waiting))
            elif turn is not None:
                work.append(Work(call.stage, turn.index, since, waiting))
        # Output blocks only on a full event queue: the client is not taking events.
        if not session.events.queue.full():
            self._full_since = None
        elif self._full_since is None:
            self._full_since = at
        if turn is not None and self._full_since is not None:
            work.append(Work("output", turn.index, self._full_since))
        if turn is not None:
            delivered = turn.first_audio_at if session.chat.speak else turn.llm_first_token_at
            return (Owed(turn.index, turn.speech_end_at) if delivered is None else None), work
        # No turn yet: an utterance being transcribed is a reply owed since it was sent.
        stt = [w for w in work if w.stage == "stt"]
        return (Owed(stt[0].episode, stt[0].since) if stt else None), work

    async def report(self, stall: Stall) -> None:
        session, message = self.session, stall.describe()
        log.warning("session %s: %s; cancelling it", session.id, message)
        if self.on_dead_air is not None:
            try:
                self.on_dead_air(stall.stage)
            except Exception:
                log.exception("on_dead_air hook failed")
        call = self._call_of(stall)
        if call is not None:
            # Its stage reports it (now, or at its next wait), as it does a provider failure.
            call.abort(f"{message}; cancelled")
        elif stall.stage in ("output", PIPELINE):
            await self._cut(stall, message)
        # else: that request ended meanwhile; nothing left to cancel
        if self.params.recovery_text and stall.episode not in self._recovery_turns:
            self._recover = (stall.episode, session.conversation.next_turn_index)

    def _call_of(self, stall: Stall) -> Call | None:
        for call in self.watch.calls.values():
            if call.stage != stall.stage:
                continue
            if call.stage != "stt" or stall.episode == ("utterance", call.seq):
                return call
        return None

    async def _cut(self, stall: Stall, message: str) -> None:
        """End a stalled turn that no provider request holds, the way a barge-in does."""
        session = self.session
        turn = session.conversation.live
        if turn is None or turn.closed or turn.index != stall.episode:
            return
        turn.failed = True
        await _bounded(session.events.error(DEAD_AIR, f"{message}; the reply was cut", turn.index))
        await _bounded(session.interrupt())

    async def _maybe_recover(self) -> None:
        """Say the recovery line once the stalled work has ended, unless the user moved on."""
        assert self._recover is not None
        _, next_index = self._recover
        session, conversation = self.session, self.session.conversation
        live = conversation.live
        if conversation.next_turn_index != next_index or session.input_ended:
            self._recover = None  # a new turn came meanwhile, or none will: too late for it
            return
        if live is not None and not live.closed:
            return  # the stalled turn is still ending
        speaking = session.vad is not None and session.vad.segmenter.machine.state != VadState.QUIET
        if speaking or self.watch.busy("stt"):
            return  # the user is speaking, or being transcribed: wait for that
        if session.events.queue.full():
            return  # the client is not reading: nobody would hear it (and `say` must not block)
        self._recover = None
        await self.say(self.params.recovery_text)

    async def say(self, text: str) -> None:
        """An agent turn with no user input: `text`, as text and (in a speaking session) TTS."""
        session = self.session
        turn = session.conversation.open_turn("", time.monotonic())
        self._recovery_turns.add(turn.index)
        turn.agent_text = text
        await session.events.text_delta(turn, text)
        spoken = clean_for_speech(text) if session.chat.speak else ""
        if spoken:
            await session.tts.put(Sentence(turn=turn, text=spoken))
        await session.tts.put(EndOfTurn(turn=turn))


async def _bounded(awaitable: Awaitable[Any]) -> None:
    try:
        await asyncio.wait_for(awaitable, SEND_TIMEOUT_S)
    except TimeoutError:
        log.warning("dead-air watchdog: the client takes no events; gave up waiting on it")
