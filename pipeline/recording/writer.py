"""Recordings written as they stream, off the event loop, in bounded memory.

Why a dedicated thread: resampling, mixing and file writes must never run on the event loop
that paces every live session, and one thread for all recordings of a process costs little
(it mostly copies bytes). The loop side (`CallRecorder`) only stamps each piece of audio with
the time it reached the session and appends it to a queue bounded in bytes; if the disk falls
that far behind, audio is dropped (counted, and replaced by silence of the same length so the
timeline stays right) rather than held or waited for. The thread places audio on the common
clock (`StereoMixer`), writes settled frames every `flush_s` (the WAV header is rewritten on
each write, so a file is valid while it grows and after a crash), and finishes the file when
the stream closes, then reports it (`Finished`) to `on_finished`, still in this thread.
"""

from __future__ import annotations

import logging
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from pipeline.audio import PcmFormat
from pipeline.recording.mixer import StereoMixer

log = logging.getLogger(__name__)
CALLER, UTTERANCE, AGENT, CUT, CLOSE, BARRIER, STOP = range(7)
MAX_PENDING_BYTES = 8 * 1024 * 1024  # queued audio of every recording, all together
FLUSH_S = 1.0


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
    ) -> None:
        self.writer, self.path, self.rate = writer, path, rate
        self.caller_format, self.agent_rate = caller_format, agent_rate
        self.meta = meta or {}
        self.on_finished = on_finished
        self.started = time.monotonic()
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
            self.writer.submit(self, CUT, time.monotonic())

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
            self.writer.submit(self, CLOSE, time.monotonic())
        return self.done

    def _audio(self, kind: int, pcm: bytes) -> None:
        if self.closed or not pcm:
            return
        skipped = self._skipped.get(kind, 0)
        if self.writer.submit(self, kind, time.monotonic(), pcm, skipped):
            if skipped:
                self._skipped[kind] = 0
            return
        if sum(self.dropped_bytes.values()) == 0:
            log.warning("recording %s: the writer is behind; dropping audio", self.path.name)
        self.dropped_bytes[kind] += len(pcm)
        if kind in self._skipped:
            self._skipped[kind] += len(pcm)


@dataclass
class _Item:
    recorder: CallRecorder | None
    kind: int
    t: float
    pcm: bytes = b""
    skipped: int = 0
    future: Future | None = None


class _Open:
    """A recording in the writer thread: its mixer and, once audio came, its file."""

    def __init__(self, rec: CallRecorder) -> None:
        self.rec = rec
        self.mixer = StereoMixer(rec.rate, rec.started, rec.caller_format, rec.agent_rate)
        self.file: BinaryIO | None = None
        self.wav: wave.Wave_write | None = None
        self.last_write = time.monotonic()
        self.failed = False

    def write(self, frames: bytes) -> None:
        if not frames:
            return
        if self.wav is None:
            self.rec.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.rec.path, "xb")  # closed in close()
            self.wav = wave.open(self.file, "wb")
            self.wav.setnchannels(2)
            self.wav.setsampwidth(2)
            self.wav.setframerate(self.rec.rate)
        self.wav.writeframes(frames)  # also rewrites the header's lengths
        self.file.flush()

    def close(self) -> None:
        if self.wav is not None:
            self.wav.close()
        if self.file is not None:
            self.file.close()


class RecordingWriter:
    """The one thread that writes every recording of this process."""

    def __init__(self, max_pending_bytes: int = MAX_PENDING_BYTES, flush_s: float = FLUSH_S):
        self.max_pending_bytes, self.flush_s = max_pending_bytes, flush_s
        self._queue: deque[_Item] = deque()
        self._pending_bytes = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._open: dict[int, _Open] = {}  # id(recorder) -> state; the thread's own

    def submit(
        self, rec: CallRecorder, kind: int, t: float, pcm: bytes = b"", skipped: int = 0
    ) -> bool:
        """Queue an item; False (audio only) when the queue is full. Never waits."""
        with self._cond:
            if pcm and self._pending_bytes + len(pcm) > self.max_pending_bytes:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recordings", daemon=True)
                self._thread.start()
            self._queue.append(_Item(rec, kind, t, pcm, skipped))
            self._pending_bytes += len(pcm)
            self._cond.notify()
        return True

    def barrier(self) -> Future[None]:
        """Done once everything queued before it has been handled (closes included)."""
        future: Future[None] = Future()
        with self._cond:
            if self._thread is None:
                future.set_result(None)
                return future
            self._queue.append(_Item(None, BARRIER, time.monotonic(), future=future))
            self._cond.notify()
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued and end the thread (blocking: call it off the loop)."""
        with self._cond:
            thread = self._thread
            if thread is None:
                return
            self._queue.append(_Item(None, STOP, time.monotonic()))
            self._cond.notify()
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    self._cond.wait(self.flush_s)
                batch = list(self._queue)
                self._queue.clear()
                self._pending_bytes = 0
            stop = False
            for item in batch:
                if item.kind == STOP:
                    stop = True
                else:
                    self._handle(item)
            if not stop:
                self._flush_due(time.monotonic())
                continue
            self._close_all()
            with self._cond:
                if not self._queue:  # else something came after the stop: handle it first
                    self._thread = None
                    return
                self._queue.append(_Item(None, STOP, time.monotonic()))

    def _handle(self, item: _Item) -> None:
        if item.kind == BARRIER:
            item.future.set_result(None)
            return
        rec = item.recorder
        state = self._open.get(id(rec))
        if state is None:
            state = self._open[id(rec)] = _Open(rec)
        if state.failed and item.kind != CLOSE:
            return
        mixer = state.mixer
        try:
            if item.kind == CALLER:
                mixer.caller_audio(item.t, item.pcm, item.skipped)
            elif item.kind == UTTERANCE:
                mixer.caller_utterance(item.t, item.pcm)
            elif item.kind == AGENT:
                mixer.agent_audio(item.t, item.pcm, item.skipped)
            elif item.kind == CUT:
                mixer.cut(item.t)
            elif item.kind == CLOSE:
                self._finish(state, item.t)
                return
            if mixer.settled(item.t) >= mixer.rate * self.flush_s:
                self._write(state, item.t)
        except Exception:
            log.exception("recording %s failed; the rest of this stream is not recorded", rec.path)
            state.failed = True

    def _write(self, state: _Open, t: float) -> None:
        state.write(state.mixer.commit(t))
        state.last_write = time.monotonic()

    def _flush_due(self, now: float) -> None:
        for state in list(self._open.values()):
            if not state.failed and now - state.last_write >= self.flush_s:
                try:
                    self._write(state, now)
                except Exception:
                    log.exception("recording %s failed", state.rec.path)
                    state.failed = True

    def _finish(self, state: _Open, t: float) -> None:
        rec = state.rec
        del self._open[id(rec)]
        finished = None
        try:
            if not state.failed:
                state.write(state.mixer.finish(t))
        except Exception:
            log.exception("recording %s could not be finished", rec.path)
            state.failed = True
        finally:
            state.close()
        if state.wav is not None and not state.failed:
            frames = state.mixer.written
            dropped = rec.dropped_bytes
            dropped_ms = (
                (rec.caller_format.duration_ms(dropped[CALLER]) if rec.caller_format else 0.0)
                + PcmFormat(rec.agent_rate).duration_ms(dropped[AGENT])
                + PcmFormat(16_000).duration_ms(dropped[UTTERANCE])
            )
            finished = Finished(
                path=rec.path,
                started_at=rec.started_at,
                ended_at=datetime.now(UTC),
                duration_s=frames / rec.rate,
                bytes=rec.path.stat().st_size,
                sample_rate=rec.rate,
                dropped_ms=dropped_ms,
                meta=rec.meta,
            )
            if rec.on_finished is not None:
                try:
                    rec.on_finished(finished)
                except Exception:
                    log.exception("recording %s: on_finished failed", rec.path)
        rec.done.set_result(finished)

    def _close_all(self) -> None:
        now = time.monotonic()
        for state in list(self._open.values()):
            self._finish(state, now)
