"""Signalling messages: the JSON bodies of /webrtc/*, ICE candidates and ICE servers.

Everything a browser sends here is checked before aiortc sees it, so a bad request is a 4xx
that says what is wrong rather than an assertion deep inside the ICE stack.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from aiortc import RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.sdp import SessionDescription
from pydantic import BaseModel, Field

from server.config import Settings
from server.sessions.errors import RequestError

MAX_SDP_CHARS = 100_000
MAX_CANDIDATES = 64
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")


class SignallingError(RequestError):
    """A signalling request that cannot be served (INVALID unless said otherwise)."""


class OfferIn(BaseModel):
    sdp: str = Field(max_length=MAX_SDP_CHARS, description="The browser's SDP offer.")
    type: Literal["offer"] = "offer"
    session_id: str | None = Field(
        None, max_length=200, description="Continue this stored session; omit for a new one."
    )
    customer_id: str = Field("", max_length=200)
    voice: str = Field("", max_length=200, description="TTS voice; empty for the default.")
    instructions: str = Field("", max_length=20_000, description="System prompt override.")
    record: bool = Field(False, description="Record the call (see GET /sessions/{id}/recordings).")
    tools: list[dict] = Field(
        default_factory=list,
        max_length=64,
        description="Tools the agent may call (docs/tools.md); client tools are answered "
        'with a {"type": "tool_result"} data-channel message.',
    )
    tool_sets: list[str] = Field(default_factory=list, max_length=16)
    tool_choice: str = Field("", max_length=64)


class AnswerOut(BaseModel):
    sdp: str
    type: Literal["answer"] = "answer"
    pc_id: str = Field(description="Names this call in PATCH /webrtc/offer and DELETE.")
    session_id: str


class CallsOut(BaseModel):
    calls: list[dict] = Field(
        description="One entry per live call: pc_id, session_id, connection and ICE state, "
        "age, caller audio format and frames, agent audio pacing counters."
    )
    peer_connections: int = Field(description="Open RTCPeerConnections (leak check).")


class IceConfigOut(BaseModel):
    ice_servers: list[dict] = Field(
        description="STUN/TURN servers for RTCPeerConnection (WEBRTC_ICE_SERVERS).",
        examples=[[{"urls": "stun:stun.example.org:3478"}]],
    )
    ice_timeout_s: float = Field(description="A call not connected this long is ended.")


class CandidateIn(BaseModel):
    """A browser RTCIceCandidate as JSON; an empty `candidate` means end of candidates."""

    candidate: str = Field("", max_length=1000)
    sdpMid: str | None = Field(None, max_length=64)  # the browser's own field names
    sdpMLineIndex: int | None = Field(None, ge=0, le=64)


class CandidatesIn(BaseModel):
    pc_id: str = Field(max_length=64)
    candidates: list[CandidateIn] = Field(max_length=MAX_CANDIDATES)


def parse_candidate(raw: CandidateIn) -> RTCIceCandidate | None:
    """A checked aiortc candidate, or None for end-of-candidates."""
    text = raw.candidate.strip()
    if not text:
        return None
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    bits = text.split()
    if len(bits) < 8 or bits[6] != "typ":
        raise SignallingError(
            f"ICE candidate {raw.candidate[:80]!r} is not '<foundation> <component> <protocol> "
            "<priority> <address> <port> typ <type> ...' (RFC 8839)"
        )
    foundation, component, protocol, priority, address, port, _, kind = bits[:8]
    if protocol.lower() not in ("udp", "tcp") or kind not in CANDIDATE_TYPES:
        raise SignallingError(f"ICE candidate has protocol {protocol!r} / type {kind!r}")
    if not (component.isdigit() and priority.isdigit() and port.isdigit() and int(port) < 65536):
        raise SignallingError("ICE candidate component, priority and port must be numbers")
    if not address.endswith(".local"):  # mDNS names are resolved by aioice
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SignallingError(f"ICE candidate address {address[:64]!r} is not an IP") from None
    if raw.sdpMid is None and raw.sdpMLineIndex is None:
        raise SignallingError("an ICE candidate needs sdpMid or sdpMLineIndex")
    candidate = RTCIceCandidate(
        component=int(component),
        foundation=foundation,
        ip=address,
        port=int(port),
        priority=int(priority),
        protocol=protocol.lower(),
        type=kind,
        sdpMid=raw.sdpMid,
        sdpMLineIndex=raw.sdpMLineIndex,
    )
    for key, value in zip(bits[8::2], bits[9::2], strict=False):
        if key == "raddr":
            candidate.relatedAddress = value
        elif key == "rport" and value.isdigit():
            candidate.relatedPort = int(value)
        elif key == "tcptype":
            candidate.tcpType = value
    return candidate


def ice_servers(settings: Settings) -> list[dict]:
    """The configured STUN/TURN servers, as the page's RTCPeerConnection takes them."""
    return [s.model_dump(exclude_none=True) for s in settings.webrtc_ice_servers]


def rtc_configuration(settings: Settings) -> RTCConfiguration:
    """An explicit list, even when empty: aiortc would otherwise add a public STUN server."""
    return RTCConfiguration(iceServers=[RTCIceServer(**s) for s in ice_servers(settings)])


def send_codec(sdp: str) -> str:
    """The codec our answer sends audio with (aiortc sends the first one it lists)."""
    for media in SessionDescription.parse(sdp).media:
        if media.kind == "audio" and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType
    return ""
