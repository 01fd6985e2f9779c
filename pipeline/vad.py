"""Voice activity detection as plain, synchronous logic: no asyncio, no model.

`VadStateMachine` turns per-window speech probabilities into start/stop decisions;
`SpeechSegmenter` adds the audio bookkeeping (pre-roll, trailing pad, maximum length) so a
segment handed to speech-to-text starts before the first syllable and ends a little after the
last. The model that produces the probabilities lives in `pipeline.silero`; which windows may
skip it, in `pipeline.vad_gate`.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from pydantic import BaseModel, Field

WINDOW_SAMPLES = 512  # Silero's window at 16 kHz
SAMPLE_RATE = 16_000
WINDOW_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE  # 32 ms
WINDOW_BYTES = WINDOW_SAMPLES * 2


class VadParams(BaseModel, frozen=True):
    """Per-session VAD settings; defaults follow Silero's and common voice-agent practice."""

    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    start_ms: int = Field(200, ge=0, le=5_000)
    stop_ms: int = Field(600, ge=64, le=10_000)
    pre_roll_ms: int = Field(300, ge=0, le=2_000)
    # Silence kept after speech: Whisper mishears words cut right at their end.
    pad_ms: int = Field(200, ge=0, le=1_000)
    # A monologue longer than this is cut into several segments.
    max_speech_ms: int = Field(30_000, ge=1_000, le=120_000)
    # Windows quieter than this (RMS, dB below full scale) skip the model once it has settled
    # on silence: a listening caller costs no inference. None: no absolute level.
    silence_dbfs: float | None = Field(-60.0, ge=-120.0, le=0.0)
    # Windows within this many dB of the line's own noise (tracked from windows the model read
    # as silence) skip it too, but the model still hears one window in NOISE_REFRESH. None: off
    # (both None: every window goes to the model).
    noise_margin_db: float | None = Field(3.0, ge=0.0, le=20.0)

    @property
    def release_threshold(self) -> float:
        """Hysteresis: once speaking, a window must fall clearly below to count as silence."""
        return max(self.threshold - 0.15, 0.01)


def windows_for(ms: float) -> int:
    return int(-(-ms // WINDOW_MS))  # ceil


class VadState(enum.Enum):
    QUIET = "quiet"
    STARTING = "starting"
    SPEAKING = "speaking"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Started:
    window: int  # index of the first speech window


@dataclass(frozen=True)
class Stopped:
    start_window: int
    end_window: int  # one past the last speech window


class VadStateMachine:
    """Debounces speech probabilities: speech must last `start_ms`, silence `stop_ms`."""

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.state = VadState.QUIET
        self.window = 0  # index of the next window
        self.last_was_speech = False
        self._run_start = 0
        self._run_length = 0
        self._speech_start = 0
        self._speech_end = 0
        self._start_windows = max(1, windows_for(params.start_ms))
        self._stop_windows = max(1, windows_for(params.stop_ms))
        self._max_windows = windows_for(params.max_speech_ms)

    def feed(self, probability: float) -> Started | Stopped | None:
        index = self.window
        self.window += 1
        in_speech = self.state in (VadState.SPEAKING, VadState.STOPPING)
        limit = self.params.release_threshold if in_speech else self.params.threshold
        speech = probability >= limit
        self.last_was_speech = speech
        if self.state is VadState.QUIET:
            if speech:
                self.state, self._run_start, self._run_length = VadState.STARTING, index, 0
            else:
                return None
        if self.state is VadState.STARTING:
            if not speech:
                self.state = VadState.QUIET
                return None
            self._run_length += 1
            if self._run_length >= self._start_windows:
                self.state, self._speech_start = VadState.SPEAKING, self._run_start
                self._speech_end = index + 1
                return Started(self._run_start)
            return None
        if speech:
            self.state, self._speech_end = VadState.SPEAKING, index + 1
            if index + 1 - self._speech_start >= self._max_windows:
                return self._stop()
            return None
        if self.state is VadState.SPEAKING:
            self.state, self._run_length = VadState.STOPPING, 0
        self._run_length += 1
        if self._run_length >= self._stop_windows:
            return self._stop()
        return None

    def finish(self) -> Stopped | None:
        """End of input: close a segment that is still open."""
        if self.state in (VadState.SPEAKING, VadState.STOPPING):
            return self._stop()
        self.state = VadState.QUIET
        return None

    def _stop(self) -> Stopped:
        self.state = VadState.QUIET
        return Stopped(self._speech_start, self._speech_end)


@dataclass(frozen=True)
class SpeechStart:
    offset_ms: int


@dataclass(frozen=True)
class SpeechEnd:
    start_offset_ms: int  # including pre-roll
    end_offset_ms: int  # end of the last speech window
    audio: bytes  # 16 kHz mono PCM: pre-roll + speech + pad


class SpeechSegmenter:
    """Feeds 32 ms windows and their probabilities; returns speech starts and whole segments."""

    def __init__(self, params: VadParams) -> None:
        self.params = params
        self.machine = VadStateMachine(params)
        pre_roll = windows_for(params.pre_roll_ms)
        self._pre_roll_windows = pre_roll
        # Enough history to reach back over the start debounce and the pre-roll.
        self._history: deque[bytes] = deque(maxlen=pre_roll + self.machine._start_windows + 1)
        self._segment: list[bytes] | None = None
        self._segment_first = 0
        self._pad_windows = windows_for(params.pad_ms)

    def push(self, window: bytes, probability: float) -> list[SpeechStart | SpeechEnd]:
        index = self.machine.window
        event = self.machine.feed(probability)
        if self._segment is not None:
            self._segment.append(window)
        else:
            self._history.append(window)
        if isinstance(event, Started):
            first = max(0, event.window - self._pre_roll_windows, index + 1 - len(self._history))
            self._segment = list(self._history)[first - (index + 1) :]
            self._segment_first = first
            self._history.clear()
            return [SpeechStart(offset_ms=round(event.window * WINDOW_MS))]
        if isinstance(event, Stopped):
            return [self._close(event)]
        return []

    def settled_audio(self) -> bytes | None:
        """The utterance as it will be cut if the silence now under way lasts `stop_ms`:
        returned once per pause, on the window that completes its trailing pad (after that
        no later window changes it). Speech-to-text may start on it before the VAD decides."""
        if self._segment is None or self.machine.state is not VadState.STOPPING:
            return None
        keep = self.machine._speech_end + self._pad_windows
        if self._segment_first + len(self._segment) != keep:
            return None
        return b"".join(self._segment)

    def finish(self) -> list[SpeechEnd]:
        event = self.machine.finish()
        return [self._close(event)] if event is not None else []

    def _close(self, event: Stopped) -> SpeechEnd:
        assert self._segment is not None
        keep = min(event.end_window + self._pad_windows, self._segment_first + len(self._segment))
        audio = b"".join(self._segment[: keep - self._segment_first])
        self._segment = None
        return SpeechEnd(
            start_offset_ms=round(self._segment_first * WINDOW_MS),
            end_offset_ms=round(event.end_window * WINDOW_MS),
            audio=audio,
        )
