"""Audio between a peer connection and a session: caller audio in, agent audio out.

In: decoded frames come at whatever rate and channel count the browser's codec gives (Opus is
48 kHz, often stereo; G.711 8 kHz mono), read from each frame, and are resampled with soxr to
the pipeline's 16 kHz mono. Out: the session releases agent audio a little ahead of real time;
`AgentAudioTrack` buffers it and hands aiortc one 20 ms frame per 20 ms of wall clock (silence
when there is nothing to say), and `flush()` drops what is queued the moment a barge-in cuts
the reply. When the call's codec is Opus the track encodes each frame itself, on the event
loop (~0.1 ms): aiortc would otherwise hop to a worker thread for every frame, and with many
calls those hops contend for the GIL and make frames late.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, CodecContext, Packet

from pipeline.audio import PIPELINE_RATE, PcmFormat, StreamResampler
from server.observe import metrics

log = logging.getLogger(__name__)

OUT_RATE = 48_000  # Opus's own rate: the encoder then has nothing to resample
FRAME_MS = 20
FRAME_SAMPLES = OUT_RATE * FRAME_MS // 1000
FRAME_BYTES = FRAME_SAMPLES * 2
TIME_BASE = fractions.Fraction(1, OUT_RATE)
LATE_S = FRAME_MS / 1000  # a frame released a whole frame period late missed its slot
RESYNC_S = 0.2  # further behind than this (a stalled loop): restart the clock, don't burst


def frame_pcm16(frame: AudioFrame) -> tuple[bytes, PcmFormat]:
    """A decoded frame as interleaved int16 PCM, with the format it really has."""
    channels = len(frame.layout.channels)
    samples: np.ndarray = frame.to_ndarray()  # its dtype (float, s32, s16) is checked below
    if frame.format.is_planar:  # (channels, n) -> interleaved
        samples = samples.T.reshape(-1)
    else:  # packed: (1, n * channels)
        samples = samples.reshape(-1)
    if samples.dtype.kind == "f":
        samples = np.clip(samples * 32768.0, -32768, 32767)
    elif samples.dtype.itemsize == 4:  # s32
        samples = samples >> 16
    return samples.astype("<i2").tobytes(), PcmFormat(frame.sample_rate, channels)


class CallerAudio:
    """Reads the caller's track until it ends, pushing 16 kHz mono PCM into the session."""

    def __init__(self, push: Callable[[bytes], Awaitable[None]]) -> None:
        self.push = push
        self.format: PcmFormat | None = None  # what the browser really sends, frame by frame
        self.frames = 0
        self.ms = 0.0

    async def run(self, track: MediaStreamTrack) -> None:
        resampler: StreamResampler | None = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)  # an audio track's recv gives decoded frames
            pcm, fmt = frame_pcm16(frame)
            if resampler is None or resampler.src != fmt:
                log.debug("caller audio is %d Hz x%d", fmt.sample_rate, fmt.channels)
                resampler = StreamResampler(fmt, PIPELINE_RATE)
                self.format = fmt
            self.frames += 1
            self.ms += fmt.duration_ms(len(pcm))
            out = resampler.process(pcm)
            if out:
                await self.push(out)


class OpusFrames:
    """20 ms mono frames -> Opus packets stamped with the track's own clock."""

    def __init__(self) -> None:
        self.codec = CodecContext.create("libopus", "w")
        self.codec.sample_rate, self.codec.layout, self.codec.format = OUT_RATE, "mono", "s16"
        self.codec.bit_rate = 40_000  # ample for one voice
        self.codec.options = {"application": "voip"}
        self.codec.time_base = TIME_BASE

    def encode(self, frame: AudioFrame) -> Packet | None:
        packets = self.codec.encode(frame)
        if not packets:
            return None
        packet = packets[-1]
        packet.pts, packet.time_base = frame.pts, TIME_BASE
        return packet


@dataclass
class PacingStats:
    """How well the track kept its 20 ms schedule (the benchmark reads these)."""

    frames: int = 0
    speech_frames: int = 0
    late_frames: int = 0  # released more than one frame period after their slot
    max_late_ms: float = 0.0
    resyncs: int = 0
    flushed_ms: float = 0.0


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice: 48 kHz mono PCM pushed in, paced 20 ms frames out."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()
        self._start: float | None = None
        self._pts = 0
        self._opus: OpusFrames | None = None
        self.codec = ""
        self.stats = PacingStats()

    def use_codec(self, mime_type: str) -> None:
        """The codec the call negotiated: Opus is encoded here, others by aiortc."""
        self.codec = mime_type
        self._opus = OpusFrames() if mime_type.lower() == "audio/opus" else None

    def push(self, pcm: bytes) -> None:
        self._buffer.extend(pcm)

    def flush(self) -> None:
        """Barge-in: what has not been sent yet will never be heard."""
        self.stats.flushed_ms += len(self._buffer) / 2 / OUT_RATE * 1000
        self._buffer.clear()

    @property
    def queued_ms(self) -> float:
        return len(self._buffer) / 2 / OUT_RATE * 1000

    async def recv(self) -> AudioFrame | Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            slot = self._start + self._pts / OUT_RATE
            if slot > loop.time():
                await asyncio.sleep(slot - loop.time())
            self._account(loop.time() - slot, loop)
        frame = self._frame(self._take())
        if self._opus is not None:
            packet = self._opus.encode(frame)
            if packet is not None:  # (the encoder may hold its very first frame back)
                return packet
        return frame

    def _account(self, late: float, loop: asyncio.AbstractEventLoop) -> None:
        stats = self.stats
        stats.frames += 1
        stats.max_late_ms = max(stats.max_late_ms, late * 1000)
        if late > LATE_S:
            stats.late_frames += 1
            metrics.webrtc_late_frame()
        if late > RESYNC_S:  # the loop stalled: carry on from now instead of catching up
            stats.resyncs += 1
            self._start = loop.time() - self._pts / OUT_RATE

    def _take(self) -> bytes:
        """The next 20 ms: agent audio while there is some (a reply's last piece padded),
        else silence, so the stream never stops and the browser's clock keeps running."""
        if not self._buffer:
            return bytes(FRAME_BYTES)
        self.stats.speech_frames += 1
        chunk = bytes(self._buffer[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        del self._buffer[:FRAME_BYTES]
        return chunk

    def _frame(self, pcm: bytes) -> AudioFrame:
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts = self._pts
        frame.sample_rate = OUT_RATE
        frame.time_base = TIME_BASE
        return frame
