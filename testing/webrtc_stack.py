"""The system under test for WebRTC scenarios: fake OpenAI, a VoiceServer serving the bridge's
routes on the namespace's address, and the checks scenarios share."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection

from server.app import VoiceServer
from server.persistence import queries
from testing.fakes import FakeOpenAI
from testing.settings import test_settings
from testing.webrtc_netns import ADDRESSES

FIRST_REPLY = "It is sunny and warm today. Take a hat with you."


@dataclass
class Stack:
    server: VoiceServer
    fake: FakeOpenAI
    base: str  # the HTTP API on the namespace's server address

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=30)

    async def calls(self) -> dict:
        async with self.http() as http:
            return (await http.get("/webrtc/calls")).json()

    async def wait_for_call(self, check: Callable[[dict], bool], timeout: float, what: str) -> dict:
        """The one live call as GET /webrtc/calls shows it, once `check` holds for it."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.calls()
            if len(state["calls"]) == 1 and check(state["calls"][0]):
                return state["calls"][0]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}: {state}")
            await asyncio.sleep(0.05)

    async def wait_no_calls(self, timeout: float = 15) -> float:
        """Seconds until no call (and no peer connection) is left on the server."""
        start = time.monotonic()
        while (state := await self.calls())["calls"] or state["peer_connections"]:
            if time.monotonic() - start > timeout:
                raise AssertionError(f"calls still live after {timeout}s: {state}")
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    async def session_row(self, session_id: str) -> dict:
        assert self.server.writer is not None and self.server.db is not None
        await self.server.writer.flush(timeout=10)
        row = await queries.get_session(self.server.db.pool, session_id, "default")
        assert row is not None, f"no row for session {session_id}"
        return {
            "ended": row["ended_at"] is not None,
            "end_reason": row["end_reason"] or "",
            "state": row["state"],
        }


@asynccontextmanager
async def stack(database_url: str, **overrides) -> AsyncIterator[Stack]:
    async with FakeOpenAI() as fake:
        fake.tts_ms_per_char = 20.0
        settings = test_settings(
            fake,
            database_url=database_url,
            http_host="0.0.0.0",
            allow_unauthenticated=True,
            **overrides,
        )
        server = VoiceServer(settings)
        await server.start()
        assert server.http is not None
        try:
            yield Stack(server, fake, f"http://{ADDRESSES[0]}:{server.http_port}")
        finally:
            if server.db is not None and not server.db.pool.is_closing():
                await server.stop()


def open_peer_connections() -> int:
    """RTCPeerConnections in this process (server's and callers') not closed: leaks."""
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, RTCPeerConnection) and o.connectionState != "closed"
    )


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def raw_offer(*kinds: str, data_channel: bool = True) -> str:
    """An SDP offer from a throwaway aiortc peer (closed at once) with these media kinds."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendrecv")
    if data_channel:
        pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def unsupported_codecs(sdp: str) -> str:
    """The offer with its audio codecs swapped for ones the server does not have."""
    out = []
    for line in sdp.splitlines():
        if line.startswith("m=audio"):
            line = " ".join(line.split()[:3] + ["111"])
        elif line.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")):
            continue
        out.append(line)
        if line.startswith("m=audio"):
            out.append("a=rtpmap:111 ISAC/16000")
    return "\r\n".join(out) + "\r\n"
