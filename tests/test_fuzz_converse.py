"""Property-based: any sequence of ConverseRequests, in any order, with any text (NULs, lone
surrogates as the invalid UTF-8 another language's client would send), any audio bytes, any
control value, and bytes that are no ConverseRequest at all. Whatever comes in, the stream
answers or ends promptly with a documented status and a message, never UNKNOWN or INTERNAL;
no session is left live, and a fresh session still completes a text turn.

Requests go on the wire as raw bytes (a channel call whose serializer is the identity), so a
message Python's protobuf runtime refuses to build can still be sent."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from voiceagent.v1 import audio_pb2, converse_pb2

from testing.converse_client import config, text
from tests.fuzz_support import (
    DOCUMENTED,
    STATS,
    ConverseObserver,
    RawConversation,
    assert_documented,
    config_request,
    text_request,
    text_turn,
    wait_no_live,
)

Request = converse_pb2.ConverseRequest
UNDECODABLE = b"\xff\xff\xff"
SURROGATE_TEXT = text_request("\ud800")  # b"\x1a\x05\n\x03\xed\xa0\x80": invalid UTF-8

# -- strategies ----------------------------------------------------------------------------------
SPECIAL_TEXTS = [
    "\ud800",
    "a\udfffb",
    "\ud83d\ude00",  # an emoji's two surrogates as separate code points: CESU-8 on the wire
    "\x00",
    "a\x00b",
    "",
    "   ",
    "\u202e\ufeff\u200b",
    "pizza 🍕",
    "x" * 4000,
    "x" * 4001,
]
CHARS = st.one_of(
    st.characters(exclude_categories=[]),  # all of Unicode, surrogates included
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates, often
    st.sampled_from("\x00 a\n"),
)


def wild_text(max_size: int = 30) -> st.SearchStrategy[str]:
    return st.one_of(st.text(CHARS, max_size=max_size), st.sampled_from(SPECIAL_TEXTS))


INT32 = st.integers(-(2**31), 2**31 - 1)
RATES = st.one_of(st.sampled_from([0, 8_000, 16_000, 24_000, 44_100, 48_000]), INT32)
CHANNELS = st.one_of(st.sampled_from([0, 1, 2, 3]), INT32)
ENCODINGS = st.one_of(st.sampled_from([0, 1]), INT32)


@st.composite
def fuzzy_config(draw) -> bytes:
    cfg = converse_pb2.SessionConfig()
    if draw(st.booleans()):
        cfg.input_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=draw(ENCODINGS), sample_rate_hz=draw(RATES), channels=draw(CHANNELS)
            )
        )
    if draw(st.booleans()):
        cfg.output_format.CopyFrom(
            audio_pb2.AudioFormat(
                encoding=draw(ENCODINGS), sample_rate_hz=draw(RATES), channels=draw(CHANNELS)
            )
        )
    if draw(st.booleans()):
        cfg.vad.CopyFrom(
            audio_pb2.VadConfig(
                threshold=draw(st.floats(width=32)),  # NaN and infinities too
                start_ms=draw(INT32),
                stop_ms=draw(INT32),
                pre_roll_ms=draw(INT32),
            )
        )
    strings = {}
    session_id = draw(st.one_of(st.just(""), st.uuids().map(str), wild_text(40)))
    if session_id:
        strings["session_id"] = session_id
    for name in ("customer_id", "voice", "instructions"):
        if draw(st.booleans()):
            strings[name] = draw(wild_text())
    return config_request(Request(config=cfg), **strings)


VALID_CONFIG = st.builds(
    lambda rate, channels, out: config(rate, channels if rate else 1, out).SerializeToString(),
    st.sampled_from([None, 8_000, 16_000, 48_000]),
    st.sampled_from([1, 2]),
    st.sampled_from([8_000, 16_000, 24_000, 48_000]),
)
AUDIO = st.one_of(
    st.binary(max_size=3_200),
    st.sampled_from([b"", b"\x00", b"\x00" * 65_536, b"\x01" * 65_537]),
).map(lambda pcm: Request(audio=pcm).SerializeToString())
CONTROL = st.one_of(st.sampled_from([0, 1, 2, 3]), INT32).map(
    lambda action: Request(control=converse_pb2.Control(action=action)).SerializeToString()
)
TEXT = wild_text().map(text_request)
EMPTY = st.just(b"")  # an empty ConverseRequest: no oneof set
GARBAGE = st.one_of(st.just(UNDECODABLE), st.binary(min_size=1, max_size=24))
LATER = st.one_of(TEXT, AUDIO, CONTROL, EMPTY, GARBAGE, fuzzy_config(), VALID_CONFIG)
FIRST = st.one_of(VALID_CONFIG, VALID_CONFIG, fuzzy_config(), LATER)
# Mostly good: real turns under way (text, audio, barge-ins), then perhaps one bad request in
# the middle of them. Arbitrary sequences alone rarely get past their first few requests.
GOOD_LATER = st.one_of(
    st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=40)
    .filter(str.strip)
    .map(text_request),
    st.binary(max_size=3_200).map(
        lambda b: Request(audio=b[: len(b) // 2 * 2]).SerializeToString()
    ),
    st.just(Request(control=converse_pb2.Control(action=1)).SerializeToString()),  # interrupt
)
MOSTLY_GOOD = st.tuples(
    st.just(config().SerializeToString()),
    st.builds(list.__add__, st.lists(GOOD_LATER, max_size=6), st.lists(LATER, max_size=1)),
)
SEQUENCES = st.one_of(st.tuples(FIRST, st.lists(LATER, max_size=6)), MOSTLY_GOOD)


@pytest.fixture
def quick_tts(fake_openai):
    """Agent audio is paced in real time: keep replies short even for 4000-character texts."""
    fake_openai.tts_ms_per_char = 0.1
    return fake_openai


@pytest.fixture
async def observed(monkeypatch, start_server, quick_tts):
    """A server whose Converse handler reports how each call ended, and that observer."""
    observer = ConverseObserver()
    observer.install(monkeypatch)
    return await start_server(), observer


# -- the property ------------------------------------------------------------------------------
@pytest.mark.fuzz
@example(requests=(config(None).SerializeToString(), [SURROGATE_TEXT]), cancel=False)
@example(requests=(config(None).SerializeToString(), [text_request("a\x00b")]), cancel=False)
@example(requests=(UNDECODABLE, []), cancel=False)
@example(requests=(config().SerializeToString(), [b"", UNDECODABLE]), cancel=False)
@example(requests=(config_request(config(None), customer_id="\udc00"), []), cancel=False)
@given(requests=SEQUENCES, cancel=st.booleans())
async def test_any_request_sequence_ends_documented(observed, requests, cancel):
    agent, observer = observed
    first, later = requests
    observer.ends.clear()
    convo = RawConversation(agent.channel)
    convo.send(first, *later)
    STATS["grpc requests sent"] += 1 + len(later)
    STATS["grpc sequences"] += 1
    if cancel:  # the client vanishes mid-stream instead of half-closing
        await asyncio.sleep(0.05)
        convo.call.cancel()
        STATS["grpc cancelled mid-stream"] += 1
        end = await observer.next_end()
        assert end.escaped in ("", "CancelledError") and end.code in DOCUMENTED, end
        await wait_no_live(agent.server)
        await text_turn(agent.stub)
        return
    convo.close_input()
    out = await convo.outcome()
    end = await observer.next_end()
    assert_documented(out, end)
    STATS[f"grpc ended {end.code.name}"] += 1
    await wait_no_live(agent.server)
    await text_turn(agent.stub)  # the server is still usable
    await wait_no_live(agent.server)


async def test_worst_known_inputs_back_to_back(observed):
    """The known bad inputs in a burst on one channel, then an ordinary turn."""
    agent, observer = observed
    for bad in (UNDECODABLE, SURROGATE_TEXT, text_request("a\x00b"), b"", b"\x08\x01"):
        convo = RawConversation(agent.channel)
        convo.send(config(None), bad)
        convo.close_input()
        out = await convo.outcome()
        end = await observer.next_end()
        assert_documented(out, end)
        assert end.code == grpc.StatusCode.INVALID_ARGUMENT, end
    await wait_no_live(agent.server)
    await text_turn(agent.stub)
    await wait_no_live(agent.server)


# -- undecodable messages: INVALID_ARGUMENT, promptly, and the session stays resumable -----------
async def test_undecodable_first_message(agent):
    convo = RawConversation(agent.channel)
    convo.send(UNDECODABLE)  # the client keeps its side open: the server must end the stream
    out = await convo.outcome(timeout=5)
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (out.code, out.details)
    assert "could not be decoded as a voiceagent.v1.ConverseRequest" in out.details
    assert out.events == [] and out.seconds < 5
    await wait_no_live(agent.server, 5)
    await text_turn(agent.stub)


async def test_undecodable_later_message_leaves_the_session_resumable(agent):
    for bad in (UNDECODABLE, SURROGATE_TEXT, text_request("\udfff\ud800")):
        await undecodable_later(agent, bad)


async def undecodable_later(agent, bad: bytes) -> None:
    convo = RawConversation(agent.channel)
    convo.send(config(None), text("First turn"))
    events = []
    while (event := await convo.next()).WhichOneof("event") != "turn_completed":
        events.append(event)
    session_id = next(e.session_started.session_id for e in events if e.HasField("session_started"))
    convo.send(bad)  # and the client never half-closes
    out = await convo.outcome(timeout=5)  # promptly: the server ends the stream itself
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT, (out.code, out.details)
    assert "could not be decoded" in out.details
    await wait_no_live(agent.server, 5)
    # Not busy, not poisoned: the same session goes on with its history.
    resumed = RawConversation(agent.channel)
    resumed.send(config(None, session_id=session_id), text("Second turn"))
    resumed.close_input()
    out = await resumed.outcome()
    assert out.code == grpc.StatusCode.OK, (out.code, out.details)
    assert out.events[0].session_started.resumed
    done = [e.turn_completed for e in out.events if e.HasField("turn_completed")]
    assert [(d.turn_index, d.agent_text) for d in done] == [(2, "You said: Second turn.")]
    await wait_no_live(agent.server)


async def test_refused_text_does_not_poison_the_session(agent):
    """A NUL in a text (valid protobuf, refused by the text check) ends the stream with
    INVALID_ARGUMENT; resuming, the next turn sees only the good history."""
    session_id = await text_turn(agent.stub, "Remember pizza")
    convo = RawConversation(agent.channel)
    convo.send(config(None, session_id=session_id), text_request("bad\x00text"))
    out = await convo.outcome()
    assert out.code == grpc.StatusCode.INVALID_ARGUMENT and "NUL" in out.details
    await wait_no_live(agent.server)
    await text_turn(agent.stub, "Still pizza", session_id=session_id)
    await wait_no_live(agent.server)


async def test_unknown_session_id_of_any_shape(agent):
    for sid, code in ((str(uuid.uuid4()), "NOT_FOUND"), ("not-a-uuid", "INVALID_ARGUMENT")):
        convo = RawConversation(agent.channel)
        convo.send(config(None, session_id=sid))
        out = await convo.outcome(timeout=5)
        assert out.code.name == code and out.details
    await wait_no_live(agent.server)
