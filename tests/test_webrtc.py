"""WebRTC calls from an aiortc caller: speech in, transcript and reply events on the data
channel, the agent's audio on the track, barge-in, bad input and the ways a call ends.

Each test runs testing/webrtc_scenario.py in its own network namespace (ICE needs interface
addresses, and these must not be the machine's): see testing/webrtc_netns.py.
"""

from __future__ import annotations

import pytest

from testing import webrtc_netns

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def scenario(database_url, tmp_path):
    reason = webrtc_netns.unavailable()
    if reason:
        pytest.skip(f"WebRTC tests need a private network namespace: {reason}")
    if webrtc_netns.socket_database(database_url):
        where = ["--database-url", database_url]
    else:  # a TCP database cannot be reached from inside the namespace: an embedded one
        where = ["--data-dir", str(tmp_path / "var")]

    async def run(mode: str, *args: str) -> dict:
        result, log = await webrtc_netns.run("testing.webrtc_scenario", mode, *where, *args)
        assert "error" not in result, f"{result['error']}\n{log[-6000:]}"
        return result

    return run


@pytest.mark.parametrize("codec", ["opus", "PCMU"])
async def test_a_spoken_turn_a_typed_turn_a_barge_in_and_hang_up(scenario, codec):
    r = await scenario("conversation", "--codec", codec)
    # Speech in: the browser's format read from the frames, resampled to 16 kHz mono.
    caller = r["server_call"]["caller_audio"]
    assert (caller["sample_rate"], caller["channels"]) == (
        (48000, 2) if codec == "opus" else (8000, 1)
    )
    [upload] = r["stt_upload"]
    assert upload["sample_rate"] == 16000 and upload["channels"] == 1
    assert 1.5 < upload["duration_s"] < r["spoken_s"]  # the utterance, without the silences
    # The gRPC stream's events, as JSON on the data channel.
    assert r["session_started"]["session_id"] == r["answer_session_id"]
    assert r["session_started"]["output_format"]["sample_rate_hz"] == 48000
    assert {"speech_started", "speech_stopped", "transcript", "agent_text_delta",
            "state_changed", "turn_completed", "interrupted"} <= set(r["event_kinds"])  # fmt: skip
    assert r["transcript"]["text"] == "what is the weather like today"
    assert r["agent_text"] == "It is sunny and warm today. Take a hat with you."
    first = r["first_turn"]
    assert first["latency"]["end_of_speech_to_first_audio_ms"] > 0
    # The reply's audio arrived as one stretch (no gap between its two sentences) as long
    # as what the server sent, give or take a frame.
    [run_ms] = r["first_reply_runs_ms"]
    assert abs(run_ms - first["agent_audio_ms"]) <= 60, (run_ms, first["agent_audio_ms"])
    assert r["received"]["sample_rate"] == (48000 if codec == "opus" else 8000)
    paced = r["server_call"]["agent_audio"]  # paced in real time (bench/webrtc_calls.py
    assert paced["late_frames"] <= paced["frames"] * 0.1  # measures it under load)
    assert paced["frames"] * 20 >= r["server_call"]["age_s"] * 1000 * 0.9  # no frames missing
    # Barge-in: what was queued is dropped at once, not played out.
    assert r["interrupted"]["turn_index"] == 2 and r["interrupted"]["audio_sent_ms"] > 500
    assert r["after_cut"]["flushed_ms"] > 0
    assert r["sound_after_interrupt_ms"] < 250
    # Hang-up over the data channel: everything released, the session ended.
    assert r["row"] == {"ended": True, "end_reason": "hang_up", "state": "ended"}
    assert r["live_sessions"] == 0 and r["open_peer_connections"] == 0


async def test_bad_signalling_and_data_channel_input_get_clear_errors_and_leak_nothing(scenario):
    r = await scenario("bad_input")
    s = {name: status for name, (status, _) in r["statuses"].items()}
    assert s == {
        "malformed_sdp": 400, "truncated_sdp": 400, "empty_sdp": 400, "no_audio": 400,
        "video_only": 400, "unsupported_codecs": 400, "answer_not_offer": 422, "no_sdp": 422,
        "huge_sdp": 422, "unknown_session": 404, "bad_session_id": 422, "not_json": 422,
        "unknown_pc_id": 404, "garbage_candidate": 400, "bad_address": 400, "bad_port": 400,
        "no_mid": 400, "not_a_list": 422, "delete_unknown": 404,
    }  # fmt: skip
    detail = {name: str(d) for name, (_, d) in r["statuses"].items()}
    assert "v=0" in detail["malformed_sdp"] and "no audio" in detail["no_audio"]
    assert "opus" in detail["unsupported_codecs"] and "not found" in detail["unknown_session"]
    assert "not an IP" in detail["bad_address"] and "no live WebRTC call" in detail["unknown_pc_id"]
    # Failed offers leave no peer connection behind; the good call is the only one.
    assert r["calls_after_bad_offers"] == 1 and r["peer_connections_after_bad_offers"] == 1
    messages = [e["message"] for e in r["errors"]]
    assert all(e["code"] == "ERROR_CODE_INVALID_REQUEST" for e in r["errors"])
    assert any("invalid JSON" in m for m in messages)
    assert any("unknown message type 'bogus'" in m for m in messages)
    assert any("binary" in m for m in messages) and any("limit is 4000" in m for m in messages)
    # ...and that call went on: a typed turn after all that still gets its reply.
    assert r["reply"]["agent_text"] == "Still here." and r["reply"]["agent_audio_ms"] > 0
    assert r["live_sessions"] == 0 and r["open_peer_connections"] == 0


async def test_ice_timeout_page_close_resume_and_shutdown_clean_up(scenario):
    r = await scenario("lifecycle")
    assert 2.5 < r["ice_timeout_s"] < 8  # WEBRTC_ICE_TIMEOUT_S=3
    assert r["ice_timeout_row"] == {"ended": True, "end_reason": "ice_timeout", "state": "ended"}
    assert r["page_close_cleanup_s"] < 5
    assert r["page_close_row"]["ended"] and r["page_close_row"]["end_reason"] == "hang_up"
    assert r["resumed"]["resumed"] is True
    assert r["resume_ended"][0] == 409 and "has ended" in r["resume_ended"][1]
    # Shutdown ends the call but keeps its session resumable, like a gRPC stream.
    assert r["after_shutdown_calls"] == 0
    assert r["shutdown_row"] == {"ended": False, "state": "disconnected"}
    assert r["open_peer_connections"] == 0


async def test_client_tool_over_the_data_channel_then_end_call_hangs_up(scenario):
    r = await scenario("tools")
    assert (
        r["tool_call"]["name"] == "get_weather" and r["tool_call"]["runner"] == "TOOL_RUNNER_CLIENT"
    )
    assert r["first_call_arguments"] == {"city": "Paris"}
    bad = r["bad_result_error"]
    assert bad["code"] == "ERROR_CODE_INVALID_TOOL_RESULT" and "nope" in bad["message"]
    assert r["done"] == [
        ["get_weather", "TOOL_OUTCOME_COMPLETED", '{"sky": "sun"}'],
        ["end_call", "TOOL_OUTCOME_COMPLETED", '{"ok": true}'],
    ]
    assert r["second_request_tail"]["role"] == "tool"
    assert r["row"] == {"ended": True, "end_reason": "agent_hung_up", "state": "ended"}
