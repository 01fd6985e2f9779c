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

import contextlib
import logging
import threading
import time
import wave
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from pipeline.audio import PcmFormat
from pipeline.recording.mixer import UTTERANCE_FORMAT, StereoMixer
from pipeline.recording.recorder import (
    AGENT,
    BARRIER,
    CALLER,
    CLOSE,
    CUT,
    STOP,
    UTTERANCE,
    CallRecorder,
    Finished,
)

log = logging.getLogger(__name__)
MAX_PENDING_BYTES = 8 * 1024 * 1024  # queued audio of every recording, all together
FLUSH_S = 1.0


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
        self.last_write = rec.clock()
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
        assert self.file is not None  # opened with the wav just above
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
                # Everything stamped up to now is in `batch`: frames up to now may be settled.
                now = {key: state.rec.clock() for key, state in self._open.items()}
            stop = False
            for item in batch:
                if item.kind == STOP:
                    stop = True
                else:
                    self._handle(item)
            if not stop:
                self._flush_due(now)
                continue
            self._close_all()
            with self._cond:
                if not self._queue:  # else something came after the stop: handle it first
                    self._thread = None
                    return
                self._queue.append(_Item(None, STOP, time.monotonic()))

    def _handle(self, item: _Item) -> None:
        if item.kind == BARRIER:
            assert item.future is not None  # a barrier always carries its future
            item.future.set_result(None)
            return
        rec = item.recorder
        assert rec is not None  # only STOP and BARRIER items have no recorder
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
        state.last_write = t

    def _flush_due(self, now: dict[int, float]) -> None:
        """Write what settled, as of when the batch was taken, where a flush is due."""
        for key, state in list(self._open.items()):
            t = now.get(key)
            if t is not None and not state.failed and t - state.last_write >= self.flush_s:
                try:
                    self._write(state, t)
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
            state.close()
            if state.wav is not None and not state.failed:
                finished = self._summary(state)
        except Exception:
            log.exception("recording %s could not be finished", rec.path)
            with contextlib.suppress(Exception):
                state.close()
            finished = None
        if finished is not None and rec.on_finished is not None:
            try:
                rec.on_finished(finished)
            except Exception:
                log.exception("recording %s: on_finished failed", rec.path)
        rec.done.set_result(finished)

    @staticmethod
    def _summary(state: _Open) -> Finished:
        rec, dropped = state.rec, state.rec.dropped_bytes
        dropped_ms = (
            (rec.caller_format.duration_ms(dropped[CALLER]) if rec.caller_format else 0.0)
            + PcmFormat(rec.agent_rate).duration_ms(dropped[AGENT])
            + UTTERANCE_FORMAT.duration_ms(dropped[UTTERANCE])
        )
        return Finished(
            path=rec.path,
            started_at=rec.started_at,
            ended_at=datetime.now(UTC),
            duration_s=state.mixer.written / rec.rate,
            bytes=rec.path.stat().st_size,
            sample_rate=rec.rate,
            dropped_ms=dropped_ms,
            meta=rec.meta,
        )

    def _close_all(self) -> None:
        for state in list(self._open.values()):
            self._finish(state, state.rec.clock())
