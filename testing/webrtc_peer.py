"""A test caller on aiortc: a microphone that plays PCM, a recorder of the agent's audio and
the data channel's events, and signalling over the bridge's HTTP routes."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from dataclasses import dataclass, field

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from av import AudioFrame

SILENCE_RMS = 200  # int16 RMS under which a received frame counts as silence


class MicTrack(MediaStreamTrack):
    """A microphone: queued PCM (this rate and channel count) at real-time pace, then silence."""

    kind = "audio"

    def __init__(self, sample_rate: int = 48_000, channels: int = 2) -> None:
        super().__init__()
        self.rate, self.channels = sample_rate, channels
        self.samples = sample_rate // 50
        self.frame_bytes = self.samples * channels * 2
        self._queue = bytearray()
        self._start: float | None = None
        self._pts = 0

    def play(self, pcm: bytes) -> float:
        """Queue `pcm`; returns its duration in seconds."""
        self._queue.extend(pcm)
        return len(pcm) / (2 * self.channels * self.rate)

    @property
    def idle(self) -> bool:
        return not self._queue

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += self.samples
            await asyncio.sleep(max(0.0, self._start + self._pts / self.rate - loop.time()))
        chunk = bytes(self._queue[: self.frame_bytes]).ljust(self.frame_bytes, b"\0")
        del self._queue[: self.frame_bytes]
        layout = "stereo" if self.channels == 2 else "mono"
        frame = AudioFrame(format="s16", layout=layout, samples=self.samples)
        frame.planes[0].update(chunk)
        frame.pts, frame.sample_rate = self._pts, self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame


@dataclass
class Received:
    """The agent's audio as it arrived: one (arrival time, ms, rms) per frame."""

    frames: list[tuple[float, float, float]] = field(default_factory=list)
    sample_rate: int = 0
    channels: int = 0

    @property
    def ms(self) -> float:
        return sum(f[1] for f in self.frames)

    def speech_runs(self, max_gap_ms: float = 60) -> list[tuple[float, float]]:
        """(arrival of first frame, ms) of each stretch of sound; short dips are kept inside."""
        runs: list[list[float]] = []
        gap = 0.0
        for at, ms, rms in self.frames:
            if rms >= SILENCE_RMS:
                if runs and gap <= max_gap_ms and runs[-1][2]:
                    runs[-1][1] += gap + ms
                else:
                    runs.append([at, ms, 1.0])
                gap = 0.0
            else:
                gap += ms
                if runs and gap > max_gap_ms:
                    runs[-1][2] = 0.0
        return [(r[0], r[1]) for r in runs]

    def last_sound_at(self) -> float:
        return max((f[0] for f in self.frames if f[2] >= SILENCE_RMS), default=0.0)

    def ms_since(self, at: float, sound_only: bool = False) -> float:
        """Ms of audio (only frames with sound, if `sound_only`) that arrived after `at`."""
        return sum(
            ms for t, ms, rms in self.frames if t > at and (not sound_only or rms >= SILENCE_RMS)
        )


class Caller:
    """One call from the test side: `await call()`, then events and audio come in."""

    def __init__(self, base_url: str, mic: MicTrack | None = None, codec: str = "opus") -> None:
        self.base_url = base_url
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never a public STUN
        self.mic = mic
        self.events: list[dict] = []
        self.received = Received()
        self.answer: dict = {}
        self._new_event = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        if mic is not None:
            transceiver = self.pc.addTransceiver(mic, direction="sendrecv")
        else:
            transceiver = self.pc.addTransceiver("audio", direction="recvonly")
        codecs = RTCRtpSender.getCapabilities("audio").codecs
        transceiver.setCodecPreferences([c for c in codecs if c.name.lower() == codec.lower()])
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.pc.on(
            "track", lambda track: self._tasks.append(asyncio.create_task(self._record(track)))
        )

    async def offer_sdp(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def call(self, **fields) -> dict:
        """Offer, answer, connect; returns the answer body (pc_id, session_id)."""
        body = {"sdp": await self.offer_sdp(), "type": "offer", **fields}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            reply = await http.post("/webrtc/offer", json=body)
        if reply.status_code != 200:
            raise AssertionError(f"offer refused: {reply.status_code} {reply.text}")
        self.answer = reply.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer["sdp"], "answer"))
        await self.wait_open()
        return self.answer

    async def wait_open(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while self.channel.readyState != "open":
            if time.monotonic() > deadline:
                raise AssertionError(f"data channel not open (pc {self.pc.connectionState})")
            await asyncio.sleep(0.02)

    def send(self, message: dict | str | bytes) -> None:
        self.channel.send(json.dumps(message) if isinstance(message, dict) else message)

    def _on_message(self, message: str) -> None:
        self.events.append(json.loads(message))
        self._new_event.set()

    def of(self, kind: str) -> list[dict]:
        return [e[kind] for e in self.events if kind in e]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(found := self.of(kind)) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                kinds = [next(iter(e)) for e in self.events]
                raise AssertionError(f"no {count}x {kind} in {timeout}s; got {kinds}")
            self._new_event.clear()
            try:
                await asyncio.wait_for(self._new_event.wait(), left)
            except TimeoutError:
                pass
        return found

    async def _record(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            samples = frame.to_ndarray().astype(np.float64).reshape(-1)
            rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
            ms = frame.samples / frame.sample_rate * 1000
            self.received.sample_rate = frame.sample_rate
            self.received.channels = len(frame.layout.channels)
            self.received.frames.append((time.monotonic(), ms, rms))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pc.close()
