"""The VAD's quiet gate: which windows may skip the model, plain logic with no model or asyncio.

Inference is most of a listening caller's cost, and most of a call is the caller listening, so
once the model has said silence, windows that are quiet, or within a few dB of the line's
own steady noise, are not sent to it (pipeline.operators.vad asks this gate for each window).
"""

from __future__ import annotations

import enum

import numpy as np

from pipeline.vad import WINDOW_BYTES, VadParams

ZERO_WINDOW = bytes(WINDOW_BYTES)


def mean_square_floor(dbfs: float | None) -> float:
    """The mean square of int16 samples at `dbfs` RMS (-1: no floor), to compare with
    `mean_square` of a window."""
    return -1.0 if dbfs is None else (32768.0 * 10 ** (dbfs / 20)) ** 2


def mean_square(window: bytes) -> float:
    """Mean square of a 16-bit PCM window (0 for digital silence, with no math)."""
    if window == ZERO_WINDOW:  # muted mic, DTX, a paused stream
        return 0.0
    samples = np.frombuffer(window, dtype="<i2").astype(np.float32)
    return float(np.dot(samples, samples)) / len(samples)


class Skip(enum.Enum):
    """Why a window need not go to the model."""

    QUIET = "quiet"  # below the absolute level: the stream takes the model's silence state
    NOISE = "noise"  # the line's steady noise: the stream keeps the state it has


NOISE_PROB = 0.1  # windows the model reads below this are the line's noise
NOISE_WINDOWS = 8  # such windows heard before their level is trusted (~0.26 s)
NOISE_REFRESH = 8  # in steady noise the model still hears one window in this many


class QuietGate:
    """Decides which windows can skip the model, and only once the model itself has said
    silence: Silero's recurrent state rings on for a few windows after speech stops (and
    through short gaps in it), so those windows still go to the model.

    Two kinds of window skip it then. Quiet ones, below an absolute level: they read as
    probability 0 and the stream takes the state the model holds after hearing silence
    (pipeline.silero), so a speech onset is caught as soon as it would have been. And, on a
    line that is never quiet (room tone, a phone line's hiss), windows within `noise_margin_db`
    of the line's own noise: its level is learnt from windows the model read as clear silence,
    speech rises well above it, and the model still hears one window in NOISE_REFRESH, from
    the state it kept, so the level and the state follow a changing line."""

    def __init__(self, params: VadParams) -> None:
        self.floor = mean_square_floor(params.silence_dbfs)
        margin = params.noise_margin_db
        self.margin = -1.0 if margin is None else 10 ** (margin / 10)  # on the mean square
        self.release = params.release_threshold
        self.settled = True  # the model's last word was silence (or it has heard nothing)
        self.noise = 0.0  # mean square of the line's noise, from windows the model heard
        self.noise_heard = 0  # windows that level is learnt from
        self.run = 0  # noise windows skipped since the model last heard one
        self.skipped = 0  # windows that did not go to the model
        self._window = b""  # the window last checked, and its mean square once computed
        self._power: float | None = None

    def check(self, window: bytes) -> Skip | None:
        """Whether `window` may skip the model, and how; None: ask the model."""
        self._window, self._power = window, None
        if not self.settled or (self.floor < 0 and self.margin < 0):
            return None  # speech: its level is only needed if the model calls it noise
        self._power = power = mean_square(window)
        if power < self.floor:
            self.skipped += 1
            return Skip.QUIET
        if (
            self.noise_heard >= NOISE_WINDOWS
            and power <= self.noise * self.margin
            and self.run < NOISE_REFRESH - 1
        ):
            self.run += 1
            self.skipped += 1
            return Skip.NOISE
        return None

    def heard(self, probability: float) -> None:
        """The model's probability for the window last checked, which it was asked about."""
        self.settled = probability < self.release
        self.run = 0
        if self.settled and probability < NOISE_PROB and self.margin >= 0:
            power = self._power
            self._learn(mean_square(self._window) if power is None else power)

    def _learn(self, power: float) -> None:
        """Fold a window the model read as clear silence into the line's noise level. It
        follows a quieter line at once; a louder one rises at most a little per window, so a
        knock or a cough the model reads as no speech cannot lift it over the speech to come.
        Quiet windows (the absolute rule covers them) teach nothing."""
        if power < max(self.floor, 1.0):
            return
        if not self.noise_heard or power < self.noise:
            self.noise = power
        else:
            self.noise += (min(power, self.noise * self.margin) - self.noise) / NOISE_WINDOWS
        self.noise_heard += 1

    def adopt(self, earlier: QuietGate) -> None:
        """Carry what an earlier gate of the same stream learnt (new VAD settings mid-call)."""
        self.settled, self.noise, self.noise_heard = (
            earlier.settled,
            earlier.noise,
            earlier.noise_heard,
        )
