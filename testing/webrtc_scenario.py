"""WebRTC scenarios, run by tests/test_webrtc*.py in a private network namespace.

    unshare -n python -m testing.webrtc_scenario MODE --database-url URL [--codec opus|PCMU]

Brings up the namespace's links (testing/webrtc_netns.py), the fake OpenAI and a VoiceServer
with the bridge's routes, runs one scenario against them and prints `RESULT <json>` on
stdout for the test to assert on. Modes: conversation (an aiortc caller speaks, types and
barges in), bad_input, lifecycle (ICE timeout, page close, resume, shutdown), chromium, tools.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import httpx

from server.persistence.database import EmbeddedPostgres
from testing import webrtc_browser, webrtc_tools_scenario
from testing.speech import speech_pcm
from testing.webrtc_netns import ADDRESSES, set_up
from testing.webrtc_peer import Caller, MicTrack
from testing.webrtc_stack import (
    FIRST_REPLY,
    open_peer_connections,
    raw_offer,
    stack,
    unsupported_codecs,
    wait_until,
)

log = logging.getLogger("webrtc_scenario")
MODES: dict[str, Callable] = {}
LONG_REPLY = (
    "Once upon a time there was a small robot who wanted to learn how to sing. Every morning "
    "it practised scales in the garden while the birds listened politely and gave advice."
)


def mode(fn: Callable) -> Callable:
    MODES[fn.__name__] = fn
    return fn


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
        # Well into it, a second of the story heard (it lasts about 3.5 s at the fake's pace).
        await wait_until(
            lambda: caller.received.ms_since(sent_at, sound_only=True) >= 1000,
            20,
            "a second of the story's audio",
        )
        cut_at = time.monotonic()
        caller.send({"type": "interrupt"})
        interrupted = (await caller.wait_for("interrupted", timeout=10))[0]
        # The track never stops (silence between replies) and RTP arrives in order: once half
        # a second of the stream sent after the cut is in, anything queued before it that the
        # flush missed would have arrived too. The flush is counted before `interrupted` goes
        # out, so the server's stats already show it.
        interrupted_at = time.monotonic()
        await wait_until(
            lambda: caller.received.ms_since(interrupted_at) >= 500,
            10,
            "half a second of the call's audio after the interrupt",
        )
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
    async with stack(args.database_url, webrtc_ice_timeout_s=3, webrtc_connect_timeout_s=3) as s:
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
        # An established call, not one still being set up: its session started on the data
        # channel and audio flowing both ways.
        await gone.wait_for("session_started", timeout=10)
        await s.wait_for_call(
            lambda c: (
                c["connection_state"] == "connected"
                and c["caller_audio"]["frames"] > 0
                and c["agent_audio"]["frames"] > 0
            ),
            10,
            "the call to connect with audio both ways",
        )
        await wait_until(lambda: gone.received.ms > 0, 10, "the agent's track at the caller")
        await gone.close()
        out["page_close_cleanup_s"] = round(await s.wait_no_calls(), 2)
        out["page_close_row"] = await s.session_row(answer["session_id"])

        # 3. A stored session is continued; an ended one is refused.
        record = await s.server.store.create_now("default", "cust-9", "Be brief.", None)
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


MODES["chromium"] = webrtc_browser.chromium
MODES["tools"] = webrtc_tools_scenario.tools


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
    p = argparse.ArgumentParser(prog="python -m testing.webrtc_scenario", description=__doc__)
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
