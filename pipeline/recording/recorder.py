"""The loop side of a recording: what a live session calls, cheap and never blocking.

Why separate from the writer: this is all the event loop ever runs for a recording — stamp
each piece of audio with the (monotonic) time it reached the session and hand it to the
`RecordingWriter` queue, which refuses rather than waits when it is full. Audio refused is
counted, and the next piece that gets through carries how much was lost before it, so the
writer lays down silence of that length and the timeline stays right.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.audio import PcmFormat

if TYPE_CHECKING:
    from pipeline.recording.writer import RecordingWriter

log = logging.getLogger(__name__)
CALLER, UTTERANCE, AGENT, CUT, CLOSE, BARRIER, STOP = range(7)


@dataclass(frozen=True)
class Finished:
    """A recording that is complete on disk."""

    path: Path
    started_at: datetime  # UTC, when the stream started (frame 0)
    ended_at: datetime
    duration_s: float
    bytes: int
    sample_rate: int
    dropped_ms: float  # audio lost because the writer fell behind (recorded as silence)
    meta: dict = field(default_factory=dict)


class CallRecorder:
    """One live stream's recording, as the session sees it: every method is cheap, never
    blocks and never raises; the file appears on the first audio."""

    def __init__(
        self,
        writer: RecordingWriter,
        path: Path,
        *,
        rate: int,
        caller_format: PcmFormat | None,
        agent_rate: int,
        started_at: datetime | None = None,
        meta: dict | None = None,
        on_finished: Callable[[Finished], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer, self.path, self.rate = writer, path, rate
        self.caller_format, self.agent_rate = caller_format, agent_rate
        self.meta = meta or {}
        self.on_finished = on_finished
        self.clock = clock  # monotonic seconds; a test may simulate real time with its own
        self.started = clock()
        self.started_at = started_at or datetime.now(UTC)
        self.done: Future[Finished | None] = Future()  # None: no audio, so no file
        self.dropped_bytes = {CALLER: 0, AGENT: 0, UTTERANCE: 0}
        self._skipped = {CALLER: 0, AGENT: 0}
        self.closed = False

    def caller_audio(self, pcm: bytes) -> None:
        """Caller audio as pushed to the session, in the session's input format."""
        self._audio(CALLER, pcm)

    def caller_utterance(self, pcm16k: bytes) -> None:
        self._audio(UTTERANCE, pcm16k)

    def agent_audio(self, pcm: bytes) -> None:
        """Agent audio as released to the client, at the session's output rate."""
        self._audio(AGENT, pcm)

    def agent_cut(self) -> None:
        if not self.closed:
            self.writer.submit(self, CUT, self.clock())

    def on_event(self, event) -> None:
        """An outbound session event (EventSink.on_event): agent audio, and barge-in cuts."""
        kind = event.WhichOneof("event")
        if kind == "agent_audio":
            self.agent_audio(event.agent_audio.audio)
        elif kind == "interrupted":
            self.agent_cut()

    def close(self) -> Future[Finished | None]:
        """The stream ended: the rest is written and the file finished, soon, in the writer."""
        if not self.closed:
            self.closed = True
            self.writer.submit(self, CLOSE, self.clock())
        return self.done

    def _audio(self, kind: int, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        skipped = self._skipped.get(kind, 0)
        if self.writer.submit(self, kind, self.clock(), pcm, skipped):
            if skipped:
                self._skipped[kind] = 0
            return
        if sum(self.dropped_bytes.values()) == 0:
            log.warning("recording %s: the writer is behind; dropping audio", self.path.name)
        self.dropped_bytes[kind] += len(pcm)
        if kind in self._skipped:
            self._skipped[kind] += len(pcm)
