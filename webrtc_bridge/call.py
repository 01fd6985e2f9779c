"""One call: a peer connection bound to one live voice session, and its whole lifetime.

Four tasks serve a call: caller audio into the session, session events out (agent audio to
the outbound track, everything else to the data channel), commands from the data channel,
and a watchdog that ends a call whose ICE never connects or stays disconnected. Every way a
call can end (hang-up by DELETE or data channel, the page closing, ICE failure or timeout,
the session ending on its own) goes through one teardown task, which stops the tasks, the
tracks and the peer connection and then hands the session back (closed, saved, unregistered).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiortc import RTCDataChannel, RTCPeerConnection
from voiceagent.v1 import converse_pb2

from pipeline.session import VoiceSession
from server.sessions.ending import EndReason
from webrtc_bridge.channel import CommandError, EventChannel, error_event, parse
from webrtc_bridge.tracks import AgentAudioTrack, CallerAudio

log = logging.getLogger(__name__)

MAX_QUEUED_COMMANDS = 32
DRAIN_LIMIT_S = 2.0  # a session that ended by itself lets its last words play out


class Call:
    def __init__(
        self,
        pc_id: str,
        pc: RTCPeerConnection,
        session: VoiceSession,
        *,
        started: converse_pb2.SessionStarted,
        ice_timeout_s: float,
        connect_timeout_s: float,
        release: Callable[[Call], Awaitable[None]],
        tenant_id: str = "default",
    ) -> None:
        self.tenant_id = tenant_id
        self.pc_id, self.pc, self.session = pc_id, pc, session
        self.started, self.ice_timeout_s = started, ice_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._release = release
        self.track = AgentAudioTrack()
        self.caller = CallerAudio(session.push_audio)
        self.channel = EventChannel()
        self.created = time.monotonic()
        self.reason = ""
        self._commands: asyncio.Queue[str | bytes] = asyncio.Queue(MAX_QUEUED_COMMANDS)
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ending: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Wire the peer connection's events and start the call's tasks (before answering)."""
        self.pc.on("connectionstatechange", self._on_state)
        self.pc.on("datachannel", self._on_datachannel)
        jobs = [self._pump_events(), self._run_commands(), self._watch()]
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "audio" and transceiver.receiver.track is not None:
                jobs.append(self.caller.run(transceiver.receiver.track))
                break
        name = f"webrtc:{self.pc_id[:8]}"
        self._tasks = [asyncio.create_task(job, name=name) for job in jobs]

    @property
    def ended(self) -> bool:
        return self._ending is not None

    def end(self, reason: str) -> asyncio.Task[None]:
        """Start the teardown once (later reasons are ignored); safe from sync callbacks."""
        if self._ending is None:
            self.reason = reason
            self._ending = asyncio.create_task(self._teardown(), name=f"webrtc-end:{self.pc_id}")
        return self._ending

    async def close(self, reason: str) -> None:
        """End the call and wait until everything is released; cancelling the caller does
        not cut the teardown short."""
        await asyncio.shield(self.end(reason))

    async def _teardown(self) -> None:
        log.info("WebRTC call %s ending: %s", self.pc_id, self.reason)
        try:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.track.stop()
            await self.pc.close()
        except Exception:
            log.exception("WebRTC call %s: closing the peer connection failed", self.pc_id)
        finally:
            await self._release(self)

    # -- peer connection events ------------------------------------------------------------
    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._disconnected.clear()
            self._connected.set()
        elif state == "disconnected":
            self._connected.clear()
            self._disconnected.set()
        elif state == "failed":
            self.end(EndReason.CONNECTION_FAILED)
        elif state == "closed":
            self.end(EndReason.HANG_UP)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self.channel.channel is not None:
            return  # the first channel carries the events; others are ignored
        self.channel.attach(channel)
        channel.on("message", self._on_message)
        channel.on("close", lambda: self.end(EndReason.HANG_UP))  # the page went away

    def _on_message(self, message: str | bytes) -> None:
        try:
            self._commands.put_nowait(message)
        except asyncio.QueueFull:
            self.channel.send(error_event("too many messages at once; slow down"))

    # -- tasks -----------------------------------------------------------------------------
    async def _watch(self) -> None:
        """Not connected within `connect_timeout_s` (an answered offer must not hold a session
        slot for long), or disconnected for `ice_timeout_s`."""
        try:
            await asyncio.wait_for(self._connected.wait(), self.connect_timeout_s)
        except TimeoutError:
            self.end(EndReason.ICE_TIMEOUT)
            return
        while True:
            await self._disconnected.wait()
            try:
                await asyncio.wait_for(self._connected.wait(), self.ice_timeout_s)
            except TimeoutError:
                self.end(EndReason.CONNECTION_LOST)
                return

    async def _pump_events(self) -> None:
        self.channel.send(converse_pb2.ConverseResponse(session_started=self.started))
        async for event in self.session.events:
            kind = event.WhichOneof("event")
            if kind == "agent_audio":
                self.track.push(event.agent_audio.audio)
                continue
            if kind == "interrupted":
                self.track.flush()  # barge-in: nothing queued may still be heard
            self.channel.send(event)
        # The session ended by itself (server shutdown, EndSession, a fatal stage error).
        await asyncio.sleep(min(self.track.queued_ms / 1000, DRAIN_LIMIT_S))
        self.end(self.session.end_reason or EndReason.SESSION_ENDED)

    async def _run_commands(self) -> None:
        while True:
            message = await self._commands.get()
            try:
                command = parse(message)
            except CommandError as exc:
                self.channel.send(error_event(str(exc)))
                continue
            if command.type == "text_input":
                await self.session.push_text(command.text)
            elif command.type == "interrupt":
                await self.session.interrupt()
            elif command.type == "tool_result":
                await self.session.tool_result(*command.result)
            elif command.type == "hang_up":
                self.end(EndReason.HANG_UP)
                return

    async def add_candidate(self, candidate) -> None:
        await self.pc.addIceCandidate(candidate)

    def describe(self) -> dict:
        """What GET /webrtc/calls shows: state, traffic and pacing, for operators and tests."""
        caller = self.caller.format
        return {
            "pc_id": self.pc_id,
            "session_id": self.session.id,
            "connection_state": self.pc.connectionState,
            "ice_connection_state": self.pc.iceConnectionState,
            "age_s": round(time.monotonic() - self.created, 3),
            "ending": self.reason or None,
            "data_channel": self.channel.channel is not None,
            "events_sent": self.channel.sent,
            "caller_audio": {
                "frames": self.caller.frames,
                "ms": round(self.caller.ms),
                "sample_rate": caller.sample_rate if caller else None,
                "channels": caller.channels if caller else None,
            },
            "agent_audio": {
                **vars(self.track.stats),
                "codec": self.track.codec,
                "queued_ms": round(self.track.queued_ms),
            },
        }
