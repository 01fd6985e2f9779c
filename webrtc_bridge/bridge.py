"""Every WebRTC call of one server: answering offers, trickle ICE, hang-up, the registry.

A session is opened by the core's `SessionOpener`, exactly as a Converse stream opens one
(checks, create or resume, registration), so limits, EndSession, graceful shutdown and
persistence treat a call like any other live stream. When a call ends the opener saves the
session and applies the one end policy: a call's end reasons are final (hang-up, ICE failure
or timeout, lost connection) except a server shutdown or a failed set-up, which stay resumable.
"""

from __future__ import annotations

import contextlib
import logging
import uuid

from aiortc import RTCPeerConnection, RTCSessionDescription

from pipeline.audio import PIPELINE_RATE, PcmFormat
from server.auth.caller import CONVERSE, Caller
from server.core import Core
from server.sessions import ids
from server.sessions.ending import EndReason
from server.sessions.errors import Kind
from server.sessions.opener import SessionRequest
from server.sessions.tools import tools_fields
from webrtc_bridge.call import Call
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

log = logging.getLogger(__name__)
CODECS = "opus, PCMU, PCMA"


class Bridge:
    def __init__(self, core: Core) -> None:
        self.settings, self.opener = core.settings, core.opener
        self.calls: dict[str, Call] = {}
        self.peer_connections: set[RTCPeerConnection] = set()  # open ones, calls or not

    async def answer(self, offer: OfferIn, caller: Caller) -> AnswerOut:
        """Accept an offer: a peer connection, a live session, and the SDP answer."""
        pc = RTCPeerConnection(rtc_configuration(self.settings))
        self.peer_connections.add(pc)
        call: Call | None = None
        try:
            await self._set_offer(pc, offer.sdp)
            call = await self._open_call(pc, offer, caller)
            await pc.setLocalDescription(await pc.createAnswer())  # gathers our candidates
            call.track.use_codec(send_codec(pc.localDescription.sdp))
        except BaseException:
            if call is not None:
                await call.close(EndReason.SETUP_FAILED)
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

    async def _open_call(self, pc: RTCPeerConnection, offer: OfferIn, caller: Caller) -> Call:
        sid = ids.client_chosen(offer.session_id, caller.tenant_id) if offer.session_id else ""
        declared = {"tools": offer.tools, "tool_sets": offer.tool_sets}
        tools, tool_sets, _ = tools_fields(declared)
        request = SessionRequest(
            edge="webrtc",
            caller=caller,
            session_id=sid,
            customer_id=offer.customer_id,
            voice=offer.voice,
            instructions=offer.instructions,
            input_format=PcmFormat(PIPELINE_RATE, 1),
            output_format=PcmFormat(OUT_RATE, 1),
            record=offer.record,
            tools=tools,
            tool_sets=tool_sets,
            tool_choice=offer.tool_choice,
        )
        opened = await self.opener.open(request)
        running = self.opener.running(opened)
        session = await running.__aenter__()

        async def release(call: Call) -> None:
            try:
                session.end_reason = session.end_reason or call.reason
                await running.__aexit__(None, None, None)  # close, save, end or keep
            finally:
                self.calls.pop(call.pc_id, None)
                self.peer_connections.discard(call.pc)

        call = Call(
            uuid.uuid4().hex,
            pc,
            session,
            started=self.opener.started(opened),
            ice_timeout_s=self.settings.webrtc_ice_timeout_s,
            connect_timeout_s=self.settings.webrtc_connect_timeout_s,
            release=release,
            tenant_id=caller.tenant_id,
        )
        self.calls[call.pc_id] = call
        pc.addTrack(call.track)  # joins the offer's audio transceiver
        call.start()
        return call

    async def add_candidates(self, body: CandidatesIn, caller: Caller) -> None:
        call = self.get(body.pc_id, caller)
        parsed = [parse_candidate(c) for c in body.candidates]  # all checked before any is used
        for candidate in parsed:
            try:
                await call.add_candidate(candidate)
            except (ValueError, OSError) as exc:
                raise SignallingError(f"ICE candidate not usable: {exc}") from None

    async def hang_up(self, pc_id: str, caller: Caller) -> None:
        call = self.get(pc_id, caller)
        caller.require(CONVERSE, call.session.id)
        await call.close(EndReason.HANG_UP)

    def get(self, pc_id: str, caller: Caller) -> Call:
        """A live call of the caller's tenant (another tenant's is not found)."""
        call = self.calls.get(pc_id)
        if call is None or call.ended or call.tenant_id != caller.tenant_id:
            raise SignallingError(f"no live WebRTC call {pc_id[:64]!r}", Kind.NOT_FOUND)
        return call

    async def close_all(self) -> None:
        """Shutdown: end every call (resumable) and close stray peer connections."""
        for call in list(self.calls.values()):
            await call.close(EndReason.SHUTDOWN)
        for pc in list(self.peer_connections):
            await self._close_pc(pc)

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        with contextlib.suppress(Exception):
            await pc.close()
        self.peer_connections.discard(pc)
