"""Property-based: any frames on /ws/voice-agent/{id}. Arbitrary JSON of arbitrary types,
lone surrogates and NULs, huge numbers, NaN, deep nesting, arbitrary (and invalid) base64,
non-JSON text and binary frames. Every message that cannot be used gets an `error` message
(`invalid_request`, never `internal`), the socket stays usable (a later text_input gets its
reply), and the session still works after reconnecting. Plus the original defect: a "\\ud800"
in text_input poisoned the cached history, so every later turn failed, even after a reconnect.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from server.http.ws_protocol import CLIENT_TYPES, PCM_FORMATS
from tests.fuzz_support import STATS, wait_no_live
from tests.test_fuzz_converse import CHARS, SPECIAL_TEXTS
from tests.test_ws import Ws, ws_url

TIMEOUT = 30.0
DEEP = "[" * 100_000 + "]" * 100_000  # past any recursion limit
HUGE_INT = "9" * 5_000  # past Python's 4300-digit int parsing limit


# -- strategies: (frame, must_fail) --------------------------------------------------------------
def wild_text(max_size: int = 20) -> st.SearchStrategy[str]:
    return st.one_of(st.text(CHARS, max_size=max_size), st.sampled_from(SPECIAL_TEXTS))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**64), 10**400, 0, -1, 16_000, 1, 2]),
    st.floats(),  # NaN and infinities too: Python's json writes and reads them
    wild_text(),
)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(wild_text(8), inner, max_size=3),
    max_leaves=8,
)
B64 = st.one_of(
    st.binary(max_size=3_200).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=200).map(lambda b: "data:audio/wav;base64," + base64.b64encode(b).decode()),
    st.sampled_from(["", "%%%", "AAA", "AAAA=", "====", "data:,", "YQ==\n"]),
    wild_text(),
)
FORMATS = st.one_of(
    st.sampled_from([*PCM_FORMATS, "wav", "webm", "mp3", "ogg", "flac", "m4a", "aiff", "PCM16"]),
    ANY_JSON,
)
NUMBERS = st.one_of(
    st.sampled_from([8_000, 16_000, 48_000, 96_001, 0, 1, 2, 3, 1.0, 2.0, True, "1", 10**400]),
    st.integers(),
    st.floats(),
)
AUDIO_CHUNK = st.fixed_dictionaries(
    {"type": st.just("audio_chunk"), "audio_data": st.one_of(B64, ANY_JSON)},
    optional={"format": FORMATS, "sample_rate": NUMBERS, "channels": NUMBERS},
)
TEXT_INPUT = st.fixed_dictionaries(
    {"type": st.just("text_input")}, optional={"text": st.one_of(wild_text(), ANY_JSON)}
)
SHAPED = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from([*CLIENT_TYPES, "dance", "", "TEXT_INPUT"]), ANY_JSON)},
    optional={"text": ANY_JSON, "audio_data": B64, "format": FORMATS},
)


def frame(message) -> str:
    return json.dumps(message)  # ensure_ascii: a lone surrogate goes out as the escape "\ud800"


def bad_text(value) -> bool:
    """Will the server refuse this "text"? Judged on what it decodes: JSON joins an escaped
    surrogate pair ("\\ud800\\udc00") into one character, which is fine."""
    value = json.loads(json.dumps(value))
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return "\x00" in value or not value.strip() or len(value) > 4_000


MUST_FAIL = st.one_of(  # frames that are certainly unusable: each must get an error message
    st.binary(max_size=64),  # binary frames are not accepted
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20).filter(
        lambda t: not t.strip().startswith(("{", "[", '"')) and not _is_json(t)
    ),  # not JSON
    ANY_JSON.filter(lambda v: not isinstance(v, dict)).map(frame),  # not an object
    st.sampled_from(
        [
            DEEP,
            '{"type": "text_input", "text": ' + DEEP + "}",
            HUGE_INT,
            '{"type": "audio_chunk", "sample_rate": ' + HUGE_INT + "}",
            '{"type": "text_input", "text": "\\ud800"}',
            '{"type": "text_input"}',
            '{"type": "text_input", "text": "a\\u0000b"}',
            "",
            "null",
            "{}",
        ]
    ),  # fmt: skip
    TEXT_INPUT.filter(lambda m: bad_text(m.get("text"))).map(frame),
)
ANY_FRAME = st.one_of(AUDIO_CHUNK.map(frame), TEXT_INPUT.map(frame), SHAPED.map(frame))
FRAMES = st.lists(
    st.one_of(MUST_FAIL.map(lambda f: (f, True)), ANY_FRAME.map(lambda f: (f, False))),
    min_size=1,
    max_size=5,
)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def ends_input(raw: str | bytes) -> bool:
    """Does this frame ask the server to end input (then the socket closes)?"""
    if isinstance(raw, bytes) or len(raw) > 10_000:
        return False
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") == "end_of_input"


@pytest.fixture
def quick_tts(fake_openai):
    fake_openai.tts_ms_per_char = 0.1  # replies are paced in real time: keep them short
    return fake_openai


# -- a socket that checks the protocol's promises ----------------------------------------------------
class Checked(Ws):
    async def recv(self) -> dict:
        message = json.loads(await self.socket.recv())
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        if message["type"] == "error":
            assert message.get("code") != "internal", message  # a server bug surfaced
            assert isinstance(message.get("message"), str) and message["message"], message
        self.seen.append(message)
        return message

    async def reply_to(self, words: str) -> dict:
        """Send a text turn; read (bounded) until its reply."""
        await self.send(type="text_input", text=words)
        async with asyncio.timeout(TIMEOUT):
            while True:
                m = await self.recv()
                if m["type"] == "conversation_response" and m["user_text"] == words:
                    assert m["text"] == f"You said: {words}.", m
                    return m

    async def until_closed(self) -> int:
        async with asyncio.timeout(TIMEOUT):
            try:
                while True:
                    await self.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else 1006

    def errors(self) -> int:
        return sum(m["type"] == "error" for m in self.seen)


async def segment(agent, client_id: str, frames: list[tuple[str | bytes, bool]]) -> None:
    """One connection: send the frames, then check the socket is still usable."""
    async with connect(ws_url(agent, client_id), max_size=None) as socket:
        ws = Checked(socket)
        async with asyncio.timeout(TIMEOUT):
            while (await ws.recv())["type"] != "session_started":
                pass
        ws.seen.clear()
        for raw, _ in frames:
            await socket.send(raw)
        STATS["ws frames sent"] += len(frames)
        must_fail = sum(bad for _, bad in frames)
        if frames and ends_input(frames[-1][0]):
            assert await ws.until_closed() == 1000  # "input ended": pending replies, then close
            STATS["ws end_of_input closes"] += 1
        else:
            await ws.reply_to(f"ping {uuid.uuid4().hex[:8]}")
        assert must_fail <= ws.errors() <= len(frames), (frames, ws.seen)
        STATS["ws error messages"] += ws.errors()


# -- the property ------------------------------------------------------------------------------
@pytest.mark.fuzz
@example(frames=[('{"type": "text_input", "text": "\\ud800"}', True)])
@example(frames=[(DEEP, True)])
@example(frames=[('{"type": "text_input", "text": "\\ud800\\udc00"}', False)])  # a pair: fine
@example(frames=[('{"type": "audio_chunk", "audio_data": "AAAA", "format": "pcm16", "channels": 1.0}', False)])  # fmt: skip
@example(frames=[('{"type": "end_of_input"}', False), ('{"type": "text_input", "text": "hi"}', False)])  # fmt: skip
@given(frames=FRAMES)
async def test_any_frames_get_errors_and_the_socket_stays_usable(agent, quick_tts, frames):
    client_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    STATS["ws sequences"] += 1
    start = 0  # end_of_input closes the socket: the frames after it go on a new connection
    for i, (raw, _) in enumerate(frames):
        if ends_input(raw):
            await segment(agent, client_id, frames[start : i + 1])
            start = i + 1
    await segment(agent, client_id, frames[start:])
    await segment(agent, client_id, [])  # and once more after a reconnect: not poisoned
    await wait_no_live(agent.server)


# -- the original defect, and its neighbours ---------------------------------------------------------
@pytest.mark.parametrize(
    "bad", ['"\\ud800"', '"x\\u0000y"'], ids=["d800", "nul"]
)  # other lone surrogates (and reversed pairs) are among the property test's examples
async def test_refused_text_does_not_poison_the_session(agent, quick_tts, bad):
    async with connect(ws_url(agent, "victim")) as socket:
        ws = Checked(socket)
        await ws.reply_to("Remember pizza")
        await socket.send('{"type": "text_input", "text": ' + bad + "}")
        error = await ws.next("error")
        assert error["code"] == "invalid_request"
        assert ("surrogate" if "\\ud" in bad else "NUL") in error["message"]
        await ws.reply_to("Still here")  # the same socket goes on
    for words in ("After a reconnect", "And again"):  # every later turn works, after reconnects
        async with connect(ws_url(agent, "victim")) as socket:
            ws = Checked(socket)
            assert (await ws.next("session_started"))["resumed"]
            reply = await ws.reply_to(words)
    assert reply["turn_index"] == 4
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as http:
        turn = await http.post(
            "/conversation/process", json={"session_id": "victim", "text": "REST"}
        )
        assert turn.status_code == 200 and turn.json()["agent_response"] == "You said: REST."
        turns = (await http.get("/sessions/victim/turns")).json()["turns"]
    assert len(turns) == 10  # 5 turns x (user, agent): the refused text is not among them
    await wait_no_live(agent.server)


async def test_a_surrogate_pair_is_one_character_and_fine(agent, quick_tts):
    async with connect(ws_url(agent, "emoji")) as socket:
        ws = Checked(socket)
        await socket.send('{"type": "text_input", "text": "pizza \\ud83c\\udf55"}')
        reply = await ws.next("conversation_response")
        assert reply["text"] == "You said: pizza 🍕."


BAD_HANDSHAKES = ["x?customer_id=%00", "x?customer_id=" + "x" * 300, "%00", "%20", "y" * 3000]


async def test_bad_handshake_is_refused_with_a_reason(agent):
    """Refused before the session opens: an error message, then close 1008 with the reason."""
    for path in BAD_HANDSHAKES:
        async with connect(ws_url(agent, path)) as socket:
            ws = Ws(socket)
            code, reason = await ws.closed()
        assert ws.seen[0]["type"] == "error" and ws.seen[0]["code"] == "invalid_request"
        assert code == 1008 and reason == ws.seen[0]["message"][:123], path[:40]
    await wait_no_live(agent.server)


async def test_unusable_handshakes_are_refused_or_repaired(agent, quick_tts):
    with pytest.raises(InvalidStatus) as refused:  # FastAPI refuses a bad query value: 403
        async with connect(ws_url(agent, "x", "?stream_audio=maybe")):
            pass
    assert refused.value.response.status_code == 403
    # Invalid UTF-8 in the path or query is decoded with U+FFFD: a usable session.
    for path in ("%ED%A0%80", "%FF", "z?customer_id=%ED%A0%80"):
        async with connect(ws_url(agent, path)) as socket:
            await Checked(socket).reply_to("Hello")
    await wait_no_live(agent.server)
