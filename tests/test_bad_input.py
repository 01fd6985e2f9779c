"""Bad input ends that stream with a precise status and message; nothing else is disturbed."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from voiceagent.v1 import audio_pb2, converse_pb2

from testing.converse_client import Conversation, Request, config, speech_requests, text

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


async def failure(stub, *requests: Request) -> grpc.aio.AioRpcError:
    convo = Conversation(stub)
    convo.send(*requests)
    convo.close_input()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await convo.rest()
    return info.value


def fmt(rate: int, channels: int = 1, encoding: int = LINEAR16) -> Request:
    req = config()
    req.config.input_format.CopyFrom(
        audio_pb2.AudioFormat(encoding=encoding, sample_rate_hz=rate, channels=channels)
    )
    return req


CASES = [
    ("audio first", [Request(audio=b"\0\0" * 320)], "INVALID_ARGUMENT", "first ConverseRequest"),
    ("text first", [text("hi")], "INVALID_ARGUMENT", "must carry `config`"),
    ("rate 44100", [fmt(44_100)], "INVALID_ARGUMENT", "44100 is not supported"),
    ("3 channels", [fmt(16_000, 3)], "INVALID_ARGUMENT", "channels must be 1 or 2"),
    ("no encoding", [fmt(16_000, 1, 0)], "INVALID_ARGUMENT", "AUDIO_ENCODING_LINEAR16"),
    ("odd PCM", [config(), Request(audio=b"\0" * 321)], "INVALID_ARGUMENT", "whole number"),
    ("stereo half", [config(channels=2), Request(audio=b"\0" * 6)], "INVALID_ARGUMENT", "4 bytes"),
    ("big chunk", [config(), Request(audio=b"\0" * 70_000)], "OUT_OF_RANGE", "65536-byte limit"),
    (
        "audio, text-only",
        [config(None), Request(audio=b"\0\0")],
        "INVALID_ARGUMENT",
        "input_format",
    ),
    ("long text", [config(), text("x" * 4001)], "OUT_OF_RANGE", "limit is 4000"),
    ("empty text", [config(), text("   ")], "INVALID_ARGUMENT", "text is empty"),
    ("second config", [config(), config()], "INVALID_ARGUMENT", "only be sent once"),
    (
        "no action",
        [config(), Request(control=converse_pb2.Control())],
        "INVALID_ARGUMENT",
        "action",
    ),
    ("empty request", [config(), Request()], "INVALID_ARGUMENT", "empty ConverseRequest"),
    ("bad id", [config(session_id="abc")], "INVALID_ARGUMENT", "not a UUID"),
    ("unknown id", [config(session_id=str(uuid.uuid4()))], "NOT_FOUND", "not found"),
    ("bad VAD", [config(vad=audio_pb2.VadConfig(threshold=1.5))], "INVALID_ARGUMENT", "threshold"),
    ("NUL", [config(instructions="a\0b")], "INVALID_ARGUMENT", "NUL"),
    ("out rate", [config(output_rate=11_025)], "INVALID_ARGUMENT", "11025"),
]


@pytest.mark.parametrize("requests,code,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_request_gets_clear_status(agent, requests, code, message):
    error = await failure(agent.stub, *requests)
    assert error.code().name == code
    assert message in error.details()
    await asyncio.wait_for(agent.server.live.wait_empty(), 5)


async def test_empty_stream(agent):
    error = await failure(agent.stub)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "config" in error.details()


async def test_bad_stream_does_not_disturb_a_live_session(agent, fake_openai):
    good = Conversation(agent.stub, config())
    good.send(*speech_requests("I want to order a pizza")[:40])  # mid-utterance
    await good.until("speech_started")
    error = await failure(agent.stub, config(), Request(audio=b"\0" * 3))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    good.send(*speech_requests("I want to order a pizza")[40:])
    done = await good.until("turn_completed")
    assert done.turn_completed.agent_text == "You said: hello there."
    good.close_input()
    await good.rest()
    assert (await good.call.code()) == grpc.StatusCode.OK


async def test_client_vanishing_mid_reply_cleans_up(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0
    other = Conversation(agent.stub, config(input_rate=None))
    gone = Conversation(agent.stub, config(input_rate=None))
    gone.send(text("Tell me a long story about the sea and the boats in it"))
    await gone.until("agent_audio")
    gone.call.cancel()
    other.send(text("Are you still there"))
    done = await other.until("turn_completed")
    assert done.turn_completed.agent_text == "You said: Are you still there."
    other.close_input()
    await other.rest()
    await asyncio.wait_for(agent.server.live.wait_empty(), 5)
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if t.get_name().split(":")[0].endswith("Operator") or t.get_name().startswith("session:")
    ]
    assert not [t for t in leftovers if not t.done()]


async def test_second_stream_on_a_live_session_is_refused(agent):
    first = Conversation(agent.stub, config(input_rate=None))
    started = await first.until("session_started")
    session_id = started.session_started.session_id
    error = await failure(agent.stub, config(input_rate=None, session_id=session_id))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "live stream" in error.details()
    first.close_input()
    await first.rest()


async def test_session_limit_gives_resource_exhausted(start_server):
    server = await start_server(max_sessions=1)
    first = Conversation(server.stub, config(input_rate=None))
    await first.until("session_started")
    error = await failure(server.stub, config(input_rate=None))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 1" in error.details()
    first.close_input()
    await first.rest()
