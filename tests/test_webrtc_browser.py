"""The call page in real (headless) Chromium: a WAV file is its microphone, the agent's
transcript and reply appear on the page, audio arrives (WebRTC getStats), hang-up and
closing the page end the call, and the WebSocket fallback holds a turn too.

Chromium comes from Debian's packages (`make browser`, run by `make test`); a screenshot of
the call is left in tests/artifacts/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testing import webrtc_browser, webrtc_netns

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
pytestmark = pytest.mark.timeout(240)


async def test_a_call_from_chromium(database_url, tmp_path):
    reason = webrtc_browser.missing() or webrtc_netns.unavailable()
    if reason:
        pytest.skip(f"the browser test needs Chromium and a network namespace: {reason}")
    where = (
        ["--database-url", database_url]
        if webrtc_netns.socket_database(database_url)
        else []  # a TCP database is out of the namespace's reach: an embedded one instead
    )
    r, log = await webrtc_netns.run(
        "testing.webrtc_scenario", "chromium", *where,
        "--data-dir", str(tmp_path), "--artifacts", str(ARTIFACTS),
    )  # fmt: skip
    assert "error" not in r, f"{r['error']}\n{log[-6000:]}"
    # What the page shows: the spoken turn's transcript and the streamed reply, then a typed one.
    assert r["users"] == ["what is the weather like today", "Please answer in text"]
    assert r["agents"][0].startswith("It is sunny and warm today. Take a hat with you.")
    assert "first audio after" in r["agents"][0]  # latency per turn
    assert r["agents"][1].startswith("Here is my typed answer.")
    # The tool call the typed turn made is shown as it happens: asked for, then its outcome.
    assert r["tools"] == ['\u2192 lookup_order({"order": "42"})', "lookup_order: completed"]
    assert r["state_mid_call"] in ("thinking", "speaking", "listening")
    assert (ARTIFACTS / "webrtc_call.png").stat().st_size > 10_000
    # Audio was received and played: the page's own WebRTC stats.
    assert r["stats"]["bytesReceived"] > 5_000 and r["stats"]["packetsReceived"] > 100
    assert r["stats"]["totalAudioEnergy"] > 0
    # The server heard Chromium's microphone (Opus, its format read from the frames).
    caller = r["server_call"]["caller_audio"]
    assert caller["sample_rate"] == 48000 and caller["ms"] > 3000
    # Hang-up button and closing the page both end the call and its session.
    assert r["hangup_row"] == {"ended": True, "end_reason": "hang_up", "state": "ended"}
    assert r["page_close_cleanup_s"] < 10 and r["page_close_row"]["ended"]
    # The WebSocket fallback: speech in, transcript and reply on the page.
    assert r["ws_transport"] == "WebSocket"
    assert r["ws_users"] == ["hello again"] and r["ws_agents"][0].startswith("You said: hello")
    assert r["open_peer_connections"] == 0 and r["live_sessions"] == 0
