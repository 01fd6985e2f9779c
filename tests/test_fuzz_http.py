"""The REST API fuzzed from its own /openapi.json with schemathesis, against the real server on
loopback: every operation, valid (positive) and invalid (negative) requests. No 5xx for any of
them, and every response conforms to the schema (status, content type, body), with
schemathesis's default checks. Each request and its checks run in a worker thread (schemathesis
speaks `requests`, which blocks) while the server goes on in the test's event loop.

Plus the HTTP edge's known defects, pinned: a deeply nested JSON body is a 422 (malformed JSON,
as documented), not a 400; a 422 does not echo the rejected input back.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.fuzz_support import STATS, wait_no_live
from tests.test_auth import make_key

DEEP = "[" * 100_000 + "]" * 100_000
# positive_data_acceptance expects every schema-valid request to be accepted. Some refusals
# depend on what no JSON Schema can say; for those (status, words of the detail) alone it is
# waived, per operation, and any other refusal of valid data still fails:
_AUDIO = [(400, ""), (413, "")]  # random bytes of `format: binary` are no decodable audio
_PATH_ID = [(400, "session_id is empty"), (400, "session_id contains a NUL"),
            (400, "session_id is ")]  # fmt: skip  # client ids: not blank, no NUL, <= 200 chars
_PAGE = [(400, "page_token is not one this server issued")]  # opaque, only the server's own
WAIVED = {
    "POST /voice/speech-to-text": _AUDIO,
    "POST /voice-agent/process": _AUDIO,
    "POST /voice/text-to-speech": [(422, "nothing speakable")],  # e.g. "\x7f" or only emoji
    "GET /sessions": _PAGE,
    "GET /sessions/{session_id}": _PATH_ID,
    "GET /sessions/{session_id}/turns": _PATH_ID + _PAGE,
    "POST /ws/disconnect/{session_id}": _PATH_ID,
    "POST /webrtc/offer": [(400, "")],  # a random string is no SDP offer
    "PATCH /webrtc/offer": [(400, "")],  # nor an ICE candidate of a live call
}


def positive_data_accepted(ctx, response, case):
    """schemathesis's positive_data_acceptance, less the refusals WAIVED above."""
    for status, words in WAIVED.get(case.operation.label, []):
        if response.status_code == status and words in response.text:
            STATS["http valid-but-refused, waived"] += 1
            return None
    return positive_data_acceptance(ctx, response, case)


def examples_per_operation() -> int:
    """A fifth of the profile's examples each (the normal run: 5; soak: 80): there are ~17
    operations, each example one real request."""
    return max(5, settings.default.max_examples // 5)


def fuzz_operation(operation, base_url: str, examples: int, budget_s: float, key: str) -> list[str]:
    """Run one operation's generated cases; returns the failures (empty: all passed)."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"  # an admin key: every route may answer
    deadline = time.monotonic() + budget_s
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    statuses: collections.Counter[int] = collections.Counter()

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=strategy)
    def run(case) -> None:
        if time.monotonic() > deadline:
            return  # over this operation's time budget: the rest pass trivially
        response = case.call_and_validate(
            base_url=base_url,
            session=session,
            timeout=30,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[positive_data_accepted],
        )
        statuses[response.status_code] += 1

    try:
        run()
    except (Exception, BaseExceptionGroup) as exc:  # shrunk: the minimal failing request
        return [f"{operation.label}: {type(exc).__name__}: {exc}"[:4000]]
    finally:
        STATS["http requests (schemathesis)"] += statuses.total()
        for status, n in statuses.items():
            STATS[f"http status {status}"] += n
        session.close()
    return []


def fuzz_all(schema_url: str, base_url: str, budget_s: float, key: str) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(schema_url)
    operations = [r.ok() for r in schema.get_all_operations()]
    failures: list[str] = []
    each = budget_s / max(1, len(operations))
    for operation in operations:
        failures += fuzz_operation(operation, base_url, examples_per_operation(), each, key)
    return len(operations), failures


@pytest.fixture
def quick_tts(fake_openai):
    fake_openai.tts_ms_per_char = 0.1  # /voice/text-to-speech of 4000 characters stays quick
    return fake_openai


@pytest.mark.fuzz
async def test_openapi_operations_give_no_5xx_and_conform(start_server, database_url, quick_tts):
    """With authentication on, as deployed: the generated requests carry an admin key, and
    schemathesis checks that requests without it are refused."""
    key = await make_key(database_url, "fuzz", admin=True)
    agent = await start_server(quick_tts)
    budget = 12.0 if settings.default.max_examples <= 25 else 400.0
    count, failures = await asyncio.to_thread(
        fuzz_all, f"{agent.http_url}/openapi.json", agent.http_url, budget, key
    )
    STATS["http operations fuzzed"] += count
    assert count >= 15, count  # every route in the schema was reached
    assert not failures, "\n\n".join(failures)
    await wait_no_live(agent.server)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=agent.http_url, headers=headers, timeout=30) as client:
        started = (await client.post("/conversation/start", json={"customer_id": "c"})).json()
        reply = await client.post(  # and the server still works
            "/conversation/process", json={"session_id": started["session_id"], "text": "hi"}
        )
    assert reply.json()["agent_response"] == "You said: hi."


# -- the HTTP edge's known defects, pinned -------------------------------------------------------
@pytest.fixture
async def http(agent):
    async with httpx.AsyncClient(base_url=agent.http_url, timeout=30) as client:
        yield client


UNPARSEABLE = [DEEP, '{"customer_id": ' + DEEP + "}", b'{"customer_id": "\xff\xfe"}']
# (path, body): each is refused with 422; none of the replies may contain "SECRET".
REFUSED = [
    ("/conversation/start", {"customer_id": "SECRET-" + "x" * 300}),  # too long
    ("/conversation/start", {"customer_id": "SECRET\x00"}),  # NUL
    ("/conversation/start", {"customer_id": ["SECRET"]}),  # wrong type
    ("/conversation/process", {"session_id": "s", "text": "SECRET " * 1000}),  # too long
    ("/voice/text-to-speech", {"text": "hi", "format": "SECRET"}),  # not one of the formats
]


async def test_unparseable_json_body_is_422(http):
    for body in UNPARSEABLE:  # too deep for json.loads, deep in a field, not UTF-8
        reply = await http.post(
            "/conversation/start", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 422, reply.text
        detail = reply.json()["detail"]
        assert detail[0]["type"] == "json_invalid" and "JSON" in detail[0]["msg"]
        assert len(reply.content) < 1_000  # the body is not echoed back


async def test_422_does_not_echo_the_input(http):
    for path, body in REFUSED:
        reply = await http.post(path, json=body)
        assert reply.status_code == 422, reply.text
        assert "SECRET" not in reply.text, reply.text
        for error in reply.json()["detail"]:
            assert set(error) <= {"type", "loc", "msg", "ctx"}, error
            assert error["loc"] and error["msg"] and error["type"]


async def test_nul_in_a_query_is_422_not_a_database_error(http):
    reply = await http.get("/sessions", params={"customer_id": "a\x00b"})
    assert reply.status_code == 422, reply.text
    assert "NUL" in reply.json()["detail"][0]["msg"]
    assert (await http.get("/sessions", params={"customer_id": "a"})).status_code == 200


async def test_422_keeps_what_a_client_needs(http):
    reply = await http.post("/conversation/start", json={"customer_id": "x" * 201})
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "customer_id"] and error["type"] == "string_too_long"
    assert error["ctx"] == {"max_length": 200} and "200" in error["msg"]
    reply = await http.post("/conversation/start", content=b'{"customer_id": "c"', headers={"content-type": "application/json"})  # fmt: skip
    [error] = reply.json()["detail"]
    assert error["type"] == "json_invalid" and error["ctx"]["error"]  # the decoder's reason
    assert json.dumps(error).count("customer_id") == 0  # the body itself is not echoed
