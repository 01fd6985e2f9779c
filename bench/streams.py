"""What a simulated caller sends, and which sent frame each server event is owed to.

Audio is 16 kHz mono in 20 ms frames (320 samples); the server's VAD cuts the same stream into
32 ms windows (512 samples) counted from the first byte. An event reports its window offsets,
so the frame whose arrival let the VAD decide is known exactly:

- speech_started(offset) fires on the window that completes the start debounce:
  window offset/32 + ceil(start_ms/32) - 1;
- speech_stopped(end) fires on the window that completes the stop debounce:
  window end/32 + ceil(stop_ms/32) - 1 (`end` is one past the last speech window);
- the last speech frame is the frame holding the last sample of window end/32 - 1.

A frame's time is its scheduled send time, t0 + i * 20 ms, so client lateness counts too.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from voiceagent.v1 import audio_pb2, converse_pb2

from pipeline.vad import WINDOW_MS, WINDOW_SAMPLES, windows_for
from testing.speech import frames, speech_pcm

RATE = 16_000
FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
FRAME_SAMPLES = RATE * FRAME_MS // 1000
LEAD_MS = 300  # silence before the utterance inside each cycle
Request = converse_pb2.ConverseRequest


@dataclass(frozen=True)
class VadTiming:
    start_ms: int
    stop_ms: int

    @staticmethod
    def _frame_of_window_end(window: int) -> int:
        """The frame holding the last sample of `window` (0-based)."""
        return ((window + 1) * WINDOW_SAMPLES - 1) // FRAME_SAMPLES

    def _window(self, offset_ms: int) -> int:
        return round(offset_ms / WINDOW_MS)

    def start_trigger(self, offset_ms: int) -> int:
        return self._frame_of_window_end(self._window(offset_ms) + windows_for(self.start_ms) - 1)

    def stop_trigger(self, end_offset_ms: int) -> int:
        return self._frame_of_window_end(
            self._window(end_offset_ms) + windows_for(self.stop_ms) - 1
        )

    def last_speech(self, end_offset_ms: int) -> int:
        return self._frame_of_window_end(self._window(end_offset_ms) - 1)


def config(vad: VadTiming) -> Request:
    linear16 = audio_pb2.AUDIO_ENCODING_LINEAR16
    return Request(
        config=converse_pb2.SessionConfig(
            input_format=audio_pb2.AudioFormat(encoding=linear16, sample_rate_hz=RATE, channels=1),
            output_format=audio_pb2.AudioFormat(encoding=linear16, sample_rate_hz=24_000),
            vad=audio_pb2.VadConfig(start_ms=vad.start_ms, stop_ms=vad.stop_ms),
        )
    )


class Script:
    """The request to send at each 20 ms tick: a looped cycle (utterance, then silence), or
    silence with the utterance spoken on demand (`speak`), for barge-in."""

    def __init__(self, text: str, cycle_s: float | None) -> None:
        pcm = speech_pcm(text, RATE, 1, lead_silence_ms=LEAD_MS, tail_silence_ms=0)
        self.utterance = [Request(audio=f) for f in frames(pcm, RATE, 1, FRAME_MS)]
        self.silence = Request(audio=bytes(2 * FRAME_SAMPLES))
        self.cycle: list[Request] = []
        if cycle_s is not None:
            total = round(cycle_s / FRAME_S)
            if total < len(self.utterance) + 1:
                raise ValueError(f"cycle of {cycle_s}s is shorter than the utterance")
            self.cycle = self.utterance + [self.silence] * (total - len(self.utterance))
        self._queued: collections.deque[Request] = collections.deque()

    def speak(self) -> None:
        self._queued.extend(self.utterance)

    def request(self, i: int) -> Request:
        if self._queued:
            return self._queued.popleft()
        return self.cycle[i % len(self.cycle)] if self.cycle else self.silence
