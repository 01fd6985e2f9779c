"""Every WebRTC call of one server: answering offers, trickle ICE, hang-up, the registry.

A session is opened by the server's `SessionOpener`, exactly as a Converse stream opens one
(checks, create or resume, registration), so limits, EndSession, graceful shutdown and
persistence treat a call like any other live stream. When a call ends
the session is saved; unless the server is shutting down (then it stays resumable) its row
is marked ended with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from aiortc import RTCPeerConnection, RTCSessionDescription
from voiceagent.v1 import audio_pb2, converse_pb2

from pipeline.audio import PIPELINE_RATE
from server.converse import ConverseHandler
from server.http.live import session_uuid
from webrtc_bridge.peer import Call
from webrtc_bridge.signalling import (
    AnswerOut,
    CandidatesIn,
    OfferIn,
    SignallingError,
    parse_candidate,
    rtc_configuration,
    send_codec,
)
from webrtc_bridge.tracks import OUT_RATE

if TYPE_CHECKING:
    from server.app import VoiceServer

log = logging.getLogger(__name__)
LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16
CODECS = "opus, PCMU, PCMA"
KEEP_RESUMABLE = ("shutdown", "setup_failed")  # not the caller's doing: may resume


class Bridge:
    def __init__(self, server: VoiceServer) -> None:
        assert server.opener is not None and server.store is not None, "start the server first"
        self.server, self.settings = server, server.settings
        self.opener, self.store = server.opener, server.store
        self.converse = ConverseHandler(server.opener)  # for its SessionStarted message
        self.calls: dict[str, Call] = {}
        self.peer_connections: set[RTCPeerConnection] = set()  # open ones, calls or not

    async def answer(self, offer: OfferIn) -> AnswerOut:
        """Accept an offer: a peer connection, a live session, and the SDP answer."""
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        self.peer_connections.add(pc)
        call: Call | None = None
        try:
            await self._set_offer(pc, offer.sdp)
            call = await self._open_call(pc, offer)
            await pc.setLocalDescription(await pc.createAnswer())  # gathers our candidates
            call.track.use_codec(send_codec(pc.localDescription.sdp))
        except BaseException:
            if call is not None:
                await call.close("setup_failed")
            else:
                await self._close_pc(pc)
            raise
        log.info("WebRTC call %s on session %s", call.pc_id, call.session.id)
        local = pc.localDescription
        return AnswerOut(sdp=local.sdp, pc_id=call.pc_id, session_id=call.session.id)

    async def _set_offer(self, pc: RTCPeerConnection, sdp: str) -> None:
        if not sdp.lstrip().startswith("v=0"):
            raise SignallingError("malformed SDP offer: it must start with 'v=0' (RFC 8866)")
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # whatever aiortc's parser trips on, the SDP is the cause
            if "Failed to set remote audio description" in str(exc):
                raise SignallingError(
                    f"the offer has no audio codec this server speaks; it supports {CODECS}"
                ) from None
            raise SignallingError(
                f"malformed SDP offer ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise SignallingError(
                "the offer has no audio: add a microphone track or an audio transceiver "
                "(a data channel alone is not a call)"
            )

    async def _open_call(self, pc: RTCPeerConnection, offer: OfferIn) -> Call:
        config = converse_pb2.SessionConfig(
            session_id=session_uuid(offer.session_id) if offer.session_id else "",
            customer_id=offer.customer_id,
            voice=offer.voice,
            instructions=offer.instructions,
            input_format=audio_pb2.AudioFormat(
                encoding=LINEAR16, sample_rate_hz=PIPELINE_RATE, channels=1
            ),
            output_format=audio_pb2.AudioFormat(
                encoding=LINEAR16, sample_rate_hz=OUT_RATE, channels=1
            ),
        )
        record, options, resumed = await self.opener.open(config)
        running = self.opener.running(record, options)
        session = await running.__aenter__()

        async def release(call: Call) -> None:
            try:
                session.end_reason = session.end_reason or call.reason
                await running.__aexit__(None, None, None)  # close, save, unregister
                if session.end_reason not in KEEP_RESUMABLE:
                    self.store.end(record, session.end_reason)
            finally:
                self.calls.pop(call.pc_id, None)
                self.peer_connections.discard(call.pc)

        call = Call(
            uuid.uuid4().hex,
            pc,
            session,
            self.converse._started(record, options, resumed),
            self.settings.webrtc_ice_timeout_s,
            release,
        )
        self.calls[call.pc_id] = call
        pc.addTrack(call.track)  # joins the offer's audio transceiver
        call.start()
        return call

    async def add_candidates(self, body: CandidatesIn) -> None:
        call = self.get(body.pc_id)
        parsed = [parse_candidate(c) for c in body.candidates]  # all checked before any is used
        for candidate in parsed:
            try:
                await call.add_candidate(candidate)
            except (ValueError, OSError) as exc:
                raise SignallingError(f"ICE candidate not usable: {exc}") from None

    async def hang_up(self, pc_id: str) -> None:
        await self.get(pc_id).close("hang_up")

    def get(self, pc_id: str) -> Call:
        call = self.calls.get(pc_id)
        if call is None or call.ended:
            raise SignallingError(f"no live WebRTC call {pc_id[:64]!r}", 404)
        return call

    async def close_all(self, reason: str = "shutdown") -> None:
        for call in list(self.calls.values()):
            await call.close(reason)

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        with contextlib.suppress(Exception):
            await pc.close()
        self.peer_connections.discard(pc)
