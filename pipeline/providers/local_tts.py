"""Offline text-to-speech: eSpeak NG (library and voices from the `espeakng-loader` wheel).

Robotic but intelligible, tiny and fast (well over 20x real time on one core). Text is spoken
a sentence at a time on the TTS worker, so long text starts playing before it is all rendered.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import numpy as np

from pipeline.providers.base import ProviderError
from pipeline.providers.espeak import EspeakSynthesizer
from pipeline.providers.workers import WorkerPool
from pipeline.text import SentenceSplitter, clean_for_speech

log = logging.getLogger(__name__)

NAME = "local/espeak-ng"
MAX_TEXT_CHARS = 10_000  # one request; the gRPC edge already stops at 4,000
PIECE_CHARS = 300  # longest piece synthesized in one go (a sentence, or part of a long one)

_pool: WorkerPool | None = None


def _shared_pool(queue_timeout_s: float) -> WorkerPool:
    """One TTS worker per process: libespeak-ng serialises every call behind a lock anyway."""
    global _pool
    if _pool is None:
        _pool = WorkerPool("local-tts", workers=1, queue_timeout_s=queue_timeout_s)
    return _pool


def split_for_speech(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """Sentences, with any sentence longer than `limit` cut at commas or spaces."""
    splitter = SentenceSplitter()
    pieces: list[str] = []
    for sentence in splitter.push(text) + splitter.flush():
        while len(sentence) > limit:
            cut = max(sentence.rfind(", ", 0, limit), sentence.rfind(" ", 0, limit))
            cut = cut + 1 if cut > 0 else limit
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


class LocalTextToSpeech:
    """eSpeak NG behind the TextToSpeech interface: int16 mono at 22,050 Hz."""

    name = NAME

    def __init__(
        self, voice: str = "en-us", rate_wpm: int = 175, queue_timeout_s: float = 10.0
    ) -> None:
        try:
            self.synth = EspeakSynthesizer(voice, rate_wpm)
        except ValueError as exc:
            raise ValueError(
                f"{exc}; set LOCAL_TTS_VOICE to an eSpeak NG voice such as en-us or en-us+f3"
            ) from None
        self.sample_rate = self.synth.sample_rate
        self.default_voice = voice
        self.queue_timeout_s = queue_timeout_s
        self.pool = _shared_pool(queue_timeout_s)

    async def stream(self, text: str, voice: str | None = None) -> AsyncIterator[bytes]:
        if len(text) > MAX_TEXT_CHARS:
            raise ProviderError(
                f"text-to-speech: {len(text)} characters is over the limit of {MAX_TEXT_CHARS} "
                "for one request; send it in parts",
                code="invalid_request",
            )
        text = clean_for_speech(text)
        if not text:
            return  # only emoji, markup or symbols: nothing to say
        voice = voice or self.default_voice
        for piece in split_for_speech(text):
            samples = await self.pool.run(
                self._synthesize, piece, voice, timeout=self.queue_timeout_s
            )
            if samples.size:
                yield samples.tobytes()

    def _synthesize(self, text: str, voice: str) -> np.ndarray:
        try:
            return self.synth.synthesize(text, voice)
        except ValueError as exc:  # unknown voice
            raise ProviderError(
                f"text-to-speech: unknown eSpeak NG voice {voice!r}; use one such as en-us, "
                "en-gb-x-rp or en-us+f3 (local TTS does not have OpenAI's voices)",
                code="invalid_request",
            ) from exc
        except RuntimeError as exc:
            raise ProviderError(f"text-to-speech provider failed: {exc}") from exc
