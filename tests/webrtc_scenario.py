"""WebRTC scenarios, run by tests/test_webrtc*.py in a private network namespace.

    unshare -n python -m tests.webrtc_scenario MODE --database-url URL [--codec opus|PCMU]

Brings up the namespace's links (tests/webrtc_netns.py), the fake OpenAI and a VoiceServer
with the bridge's routes, runs one scenario against them and prints `RESULT <json>` on
stdout for the test to assert on. Modes: conversation (an aiortc caller speaks, types and
barges in), bad_input, lifecycle (ICE timeout, page close, resume, shutdown), chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection

from server.app import VoiceServer
from server.persistence import queries
from server.persistence.database import EmbeddedPostgres
from tests import webrtc_browser as browser
from tests.conftest import test_settings
from tests.fakes import FakeOpenAI
from tests.speech import speech_pcm, write_wav
from tests.webrtc_browser import Page
from tests.webrtc_netns import ADDRESSES, set_up
from tests.webrtc_peer import Caller, MicTrack
from webrtc_bridge.routes import router

log = logging.getLogger("webrtc_scenario")
MODES: dict[str, Callable] = {}
FIRST_REPLY = "It is sunny and warm today. Take a hat with you."
LONG_REPLY = (
    "Once upon a time there was a small robot who wanted to learn how to sing. Every morning "
    "it practised scales in the garden while the birds listened politely and gave advice."
)


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
        row = await queries.get_session(self.server.db.pool, session_id)
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
        settings = test_settings(fake, database_url=database_url, http_host="0.0.0.0", **overrides)
        server = VoiceServer(settings)
        await server.start()
        assert server.http is not None
        app = server.http.config.app
        if not any(getattr(r, "path", "") == "/webrtc/offer" for r in app.routes):
            app.include_router(router)  # stand-in until the facade's create_app includes it
        try:
            yield Stack(server, fake, f"http://{ADDRESSES[0]}:{server.http_port}")
        finally:
            if server.db is not None and not server.db.pool.is_closing():
                await server.stop()


def mode(fn: Callable) -> Callable:
    MODES[fn.__name__] = fn
    return fn


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


@mode
async def conversation(args: argparse.Namespace) -> dict:
    """Speak a turn, type a turn and barge into its reply, hang up over the data channel."""
    async with stack(args.database_url) as s:
        s.fake.transcripts.append("what is the weather like today")
        s.fake.chat_replies.extend([FIRST_REPLY, LONG_REPLY])
        mic = MicTrack(48_000, 2)
        caller = Caller(s.base, mic, args.codec)
        answer = await caller.call(customer_id="webrtc-test")
        spoken_s = mic.play(speech_pcm("What is the weather like today?", 48_000, 2, 500, 1500))
        transcript = (await caller.wait_for("transcript", timeout=30))[0]
        first = (await caller.wait_for("turn_completed", timeout=30))[0]
        await wait_until(
            lambda: (
                len(caller.received.speech_runs()) >= 1
                and time.monotonic() - caller.received.last_sound_at() > 0.5
            ),
            20,
            "the first reply's audio",
        )
        first_runs = caller.received.speech_runs()
        stt = [r.audio for r in s.fake.requests if r.endpoint == "transcriptions"]
        during = await s.calls()

        # A typed turn, cut short by an interrupt once its audio is playing.
        sent_at = time.monotonic()
        caller.send({"type": "text_input", "text": "Tell me a long story"})
        await wait_until(lambda: caller.received.last_sound_at() > sent_at, 20, "the story's audio")
        await asyncio.sleep(1.0)
        cut_at = time.monotonic()
        caller.send({"type": "interrupt"})
        interrupted = (await caller.wait_for("interrupted", timeout=10))[0]
        await asyncio.sleep(1.0)
        after_cut = await s.calls()

        caller.send({"type": "hang_up"})
        cleanup_s = await s.wait_no_calls()
        row = await s.session_row(answer["session_id"])
        await caller.close()
        return {
            "answer_session_id": answer["session_id"],
            "event_kinds": sorted({next(iter(e)) for e in caller.events}),
            "session_started": caller.of("session_started")[0],
            "transcript": transcript,
            "agent_text": "".join(
                d["text"] for d in caller.of("agent_text_delta") if d["turn_index"] == 1
            ),
            "first_turn": first,
            "spoken_s": spoken_s,
            "stt_upload": [
                {"sample_rate": a.sample_rate, "channels": a.channels, "duration_s": a.duration_s}
                for a in stt
                if a is not None
            ],
            "first_reply_runs_ms": [round(ms) for _, ms in first_runs],
            "received": {
                "sample_rate": caller.received.sample_rate,
                "channels": caller.received.channels,
                "ms": round(caller.received.ms),
            },
            "server_call": during["calls"][0] if during["calls"] else None,
            "interrupted": interrupted,
            "sound_after_interrupt_ms": round((caller.received.last_sound_at() - cut_at) * 1000),
            "after_cut": after_cut["calls"][0]["agent_audio"] if after_cut["calls"] else None,
            "cleanup_s": round(cleanup_s, 2),
            "row": row,
            "live_sessions": len(s.server.live),
            "open_peer_connections": open_peer_connections(),
        }


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


@mode
async def bad_input(args: argparse.Namespace) -> dict:
    """Every kind of bad signalling and data-channel input, next to a call that must go on."""
    async with stack(args.database_url) as s:
        s.fake.chat_replies.append("Still here.")
        good = Caller(s.base, MicTrack(48_000, 2))
        answer = await good.call()
        audio = await raw_offer("audio")
        bad_offers = {
            "malformed_sdp": {"sdp": "hello world", "type": "offer"},
            "truncated_sdp": {"sdp": audio[: len(audio) // 3], "type": "offer"},
            "empty_sdp": {"sdp": "", "type": "offer"},
            "no_audio": {"sdp": await raw_offer(), "type": "offer"},
            "video_only": {"sdp": await raw_offer("video"), "type": "offer"},
            "unsupported_codecs": {"sdp": unsupported_codecs(audio), "type": "offer"},
            "answer_not_offer": {"sdp": audio, "type": "answer"},
            "no_sdp": {"type": "offer"},
            "huge_sdp": {"sdp": "v=0\r\n" + "a=x\r\n" * 30_000, "type": "offer"},
            "unknown_session": {"sdp": audio, "session_id": "6b0f8f0e-6c1e-4c55-9a59-0d7d9f1e2a3b"},
            "bad_session_id": {"sdp": audio, "session_id": "x" * 300},
        }
        host = f"candidate:1 1 udp 2130706431 {ADDRESSES[1]} 40000 typ host"
        bad_patches = {
            "unknown_pc_id": {"pc_id": "nope", "candidates": [{"candidate": host, "sdpMid": "0"}]},
            "garbage_candidate": {"pc_id": answer["pc_id"], "candidates": [{"candidate": "garbage", "sdpMid": "0"}]},
            "bad_address": {"pc_id": answer["pc_id"], "candidates": [{"candidate": host.replace(ADDRESSES[1], "not-an-ip"), "sdpMid": "0"}]},
            "bad_port": {"pc_id": answer["pc_id"], "candidates": [{"candidate": host.replace("40000", "99999"), "sdpMid": "0"}]},
            "no_mid": {"pc_id": answer["pc_id"], "candidates": [{"candidate": host}]},
            "not_a_list": {"pc_id": answer["pc_id"], "candidates": "x"},
        }  # fmt: skip
        statuses: dict[str, list] = {}

        def brief(r: httpx.Response) -> list:
            detail = r.json().get("detail")
            if isinstance(detail, list):  # a validation error: where, not the (huge) input
                detail = [f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in detail]
            return [r.status_code, detail]

        async with s.http() as http:
            for name, body in bad_offers.items():
                r = await http.post("/webrtc/offer", json=body)
                statuses[name] = brief(r)
            r = await http.post(
                "/webrtc/offer", content=b"{nope", headers={"content-type": "application/json"}
            )
            statuses["not_json"] = brief(r)
            for name, body in bad_patches.items():
                r = await http.patch("/webrtc/offer", json=body)
                statuses[name] = brief(r)
            r = await http.delete("/webrtc/calls/nope")
            statuses["delete_unknown"] = brief(r)
            after_offers = (await http.get("/webrtc/calls")).json()
        for message in (
            "not json",
            '{"type": "bogus"}',
            b"\x00\x01",
            '{"type": "text_input"}',
            "[1, 2]",
            json.dumps({"type": "text_input", "text": "x" * 5000}),
        ):
            good.send(message)
        errors = await good.wait_for("error", count=6)
        good.send({"type": "text_input", "text": "are you still there"})
        done = (await good.wait_for("turn_completed", timeout=20))[0]
        await wait_until(lambda: good.received.last_sound_at() > 0, 20, "the reply's audio")
        good.send({"type": "hang_up"})
        await s.wait_no_calls()
        await good.close()
        return {
            "statuses": statuses,
            "calls_after_bad_offers": len(after_offers["calls"]),
            "peer_connections_after_bad_offers": after_offers["peer_connections"],
            "errors": errors,
            "reply": done,
            "live_sessions": len(s.server.live),
            "open_peer_connections": open_peer_connections(),
        }


@mode
async def lifecycle(args: argparse.Namespace) -> dict:
    """ICE timeout, the page going away, resuming a stored session, and server shutdown."""
    out: dict = {}
    async with stack(args.database_url, webrtc_ice_timeout_s=3) as s:
        # 1. The answer is never applied, so ICE never connects.
        silent = Caller(s.base)
        async with s.http() as http:
            r = await http.post("/webrtc/offer", json={"sdp": await silent.offer_sdp()})
        out["ice_timeout_s"] = round(await s.wait_no_calls(), 2)
        out["ice_timeout_row"] = await s.session_row(r.json()["session_id"])
        await silent.close()

        # 2. The page closes: the peer connection goes away without a word.
        gone = Caller(s.base, MicTrack())
        answer = await gone.call()
        await asyncio.sleep(0.5)
        await gone.close()
        out["page_close_cleanup_s"] = round(await s.wait_no_calls(), 2)
        out["page_close_row"] = await s.session_row(answer["session_id"])

        # 3. A stored session is continued; an ended one is refused.
        record = await s.server.store.create_now("cust-9", "Be brief.", None)
        again = Caller(s.base, MicTrack())
        answer = await again.call(session_id=record.id)
        out["resumed"] = again.of("session_started")[0]
        again.send({"type": "hang_up"})
        await s.wait_no_calls()
        await again.close()
        async with s.http() as http:
            r = await http.post(
                "/webrtc/offer", json={"sdp": await raw_offer("audio"), "session_id": record.id}
            )
            out["resume_ended"] = [r.status_code, r.json().get("detail")]

        # 4. Shutdown while a call is live: the call ends, its session stays resumable.
        last = Caller(s.base, MicTrack())
        answer = await last.call()
        await s.server.stop()
        out["after_shutdown_calls"] = len(s.server.live)
        await last.close()
    conn = await asyncpg.connect(args.database_url)
    try:
        row = await conn.fetchrow(
            "SELECT ended_at, state FROM conversation_sessions WHERE id = $1",
            uuid.UUID(answer["session_id"]),
        )
    finally:
        await conn.close()
    out["shutdown_row"] = {"ended": row["ended_at"] is not None, "state": row["state"]}
    out["open_peer_connections"] = open_peer_connections()
    return out


@mode
async def chromium(args: argparse.Namespace) -> dict:
    """The call page in headless Chromium, its microphone a spoken WAV: a spoken and a typed
    turn, hang-up, a call ended by closing the page, and the WebSocket fallback."""
    out: dict = {}
    work = Path(args.data_dir).resolve() / "chromium"
    wav = work / "speech.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    # Leading silence: the microphone starts at getUserMedia, before ICE has connected.
    write_wav(wav, speech_pcm("What is the weather like today?", 48_000, 1, 2500, 1500), 48_000, 1)
    artifacts = Path(args.artifacts).resolve()
    async with stack(args.database_url) as s:
        s.fake.transcripts.extend(["what is the weather like today", "hello again"])
        s.fake.chat_replies.extend([FIRST_REPLY, "Here is my typed answer."])
        page = Page(await asyncio.to_thread(browser.start, wav, work / "profile"))
        # localhost: a secure context (microphone allowed); ICE still uses the veth addresses.
        url = f"http://localhost:{s.server.http_port}/client"
        try:
            await page.run(page.driver.get, url)
            await page.click("#call")
            await page.wait(
                "[...document.querySelectorAll('.msg.user')].some(e => e.textContent.includes("
                "'weather')) && [...document.querySelectorAll('.msg.agent')].some(e => "
                "e.textContent.includes('sunny'))",
                40,
                "the transcript and the agent's reply",
            )
            out["state_mid_call"] = (await page.texts("#state"))[0]
            await page.screenshot(artifacts / "webrtc_call.png")
            await page.wait("document.querySelector('.msg.agent .latency')", 20, "turn metrics")
            await asyncio.sleep(1.5)  # the reply's audio plays out
            out["stats"] = await page.stats()
            out["server_call"] = (await s.calls())["calls"][0]
            await page.js(
                "document.getElementById('text').value = 'Please answer in text';"
                "document.getElementById('send').click();"
            )
            await page.wait(
                "document.querySelectorAll('.msg.agent .latency').length >= 2", 20, "typed reply"
            )
            out["users"] = await page.texts(".msg.user")
            out["agents"] = await page.texts(".msg.agent")
            session_id = out["server_call"]["session_id"]
            await page.click("#hangup")
            out["hangup_cleanup_s"] = round(await s.wait_no_calls(), 2)
            out["hangup_row"] = await s.session_row(session_id)

            await page.click("#call")  # a second call, ended by leaving the page
            await page.wait(
                "document.getElementById('state').textContent === 'listening'", 20, "listening"
            )
            session_id = (await s.calls())["calls"][0]["session_id"]
            await page.run(page.driver.get, "about:blank")
            out["page_close_cleanup_s"] = round(await s.wait_no_calls(), 2)
            out["page_close_row"] = await s.session_row(session_id)

            await page.run(page.driver.get, url + "?transport=ws")  # the fallback
            await page.click("#call")
            await page.wait(
                "document.querySelector('.msg.user') && document.querySelector('.msg.agent .latency')",
                40,
                "a turn over the WebSocket",
            )
            out["ws_transport"] = (await page.texts("#transport"))[0]
            out["ws_users"] = await page.texts(".msg.user")
            out["ws_agents"] = await page.texts(".msg.agent")
            await page.screenshot(artifacts / "websocket_call.png")
            await page.click("#hangup")
        finally:
            await page.quit()
        out["open_peer_connections"] = open_peer_connections()
        out["live_sessions"] = len(s.server.live)
    return out


async def main(args: argparse.Namespace) -> dict:
    set_up()
    embedded = None
    if not args.database_url:  # a TCP database is out of reach here: use our own
        embedded = EmbeddedPostgres(Path(args.data_dir))
        args.database_url = await asyncio.to_thread(embedded.start)
    try:
        return await asyncio.wait_for(MODES[args.mode](args), args.timeout)
    except Exception as exc:
        log.exception("scenario %s failed", args.mode)
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.webrtc_scenario", description=__doc__)
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--database-url", default="", help="Unix-socket URL; empty: embedded")
    p.add_argument("--data-dir", default="var/webrtc-scenario", help="for the embedded one")
    p.add_argument("--codec", default="opus", help="the aiortc caller's codec: opus or PCMU")
    p.add_argument("--artifacts", default="tests/artifacts")
    p.add_argument("--timeout", type=float, default=150.0)
    return p.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("webrtc_bridge").setLevel(logging.INFO)
    result = asyncio.run(main(parse_args()))
    print("RESULT " + json.dumps(result, default=str), flush=True)
