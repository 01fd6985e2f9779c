"""Property-based: any client events on /v1/realtime. Known event types with arbitrary fields
and values (NaN, huge numbers, lone surrogates, invalid base64, wrong types), unknown types and
non-JSON frames. Every server event still parses into the SDK's GA models, nothing is an
`internal` error, and the socket stays usable: a last event still gets its answer."""

from __future__ import annotations

import asyncio
import json

from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from server.realtime.handlers import HANDLERS
from testing.realtime_client import MODELS
from tests.test_fuzz_converse import CHARS, SPECIAL_TEXTS

TIMEOUT = 30.0
TEXT = st.one_of(st.text(CHARS, max_size=12), st.sampled_from(SPECIAL_TEXTS))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT,
                    st.sampled_from([10**400, -1, 0, 5000, 0.5, "audio/pcmu", "server_vad"]))  # fmt: skip
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["session", "audio", "item", "item_id", "content_index", "audio_end_ms", "response",
          "response_id", "previous_item_id", "type", "role", "content", "format", "audio",
          "input", "output", "turn_detection", "transcription", "tools", "instructions",
          "output_modalities", "threshold", "silence_duration_ms", "call_id", "text"]  # fmt: skip
SHAPED = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)
    ),
    max_leaves=10,
)
EVENTS = st.one_of(
    st.builds(
        lambda t, body: json.dumps({**body, "type": t}),
        st.sampled_from([*HANDLERS, "session.nope", ""]),
        st.dictionaries(st.sampled_from(FIELDS), SHAPED, max_size=4),
    ),  # fmt: skip
    ANY_JSON.map(json.dumps),
    st.sampled_from(["", "{", "[[[[", "null", '{"type": 5}', '"\\ud800"']),
)
SENTINEL = {
    "type": "conversation.item.retrieve",
    "item_id": "item_sentinel",
    "event_id": "sentinel",
}


@given(events=st.lists(EVENTS, min_size=1, max_size=6))
async def test_any_events_leave_the_socket_usable(agent, fake_openai, events):
    url = agent.http_url.replace("http://", "ws://") + "/v1/realtime?model=m"
    async with connect(url, max_size=None) as socket:
        for text in events:
            await socket.send(text)
        await socket.send(json.dumps(SENTINEL))
        async with asyncio.timeout(TIMEOUT):
            while True:
                event = json.loads(await socket.recv())
                MODELS[event["type"]].model_validate(event)  # a GA event, every field right
                if event["type"] == "error":
                    assert event["error"]["code"] != "internal", event
                    if event["error"]["event_id"] == "sentinel":
                        assert event["error"]["code"] == "item_not_found"
                        break
