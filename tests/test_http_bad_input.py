"""Bad REST input gets a clear JSON error with the right status, and nothing else breaks:
after every case the next valid request works."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from server.http.audio_codec import MAX_UPLOAD_BYTES
from testing.fakes import Fault
from tests.test_http_voice import encode_file, speech_file


def client(agent) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=agent.http_url, timeout=30)


async def still_works(http: httpx.AsyncClient, sid: str) -> None:
    ok = await http.post(
        "/voice/speech-to-text", files={"audio_file": ("a.wav", speech_file("wav"), "audio/wav")}
    )
    assert ok.status_code == 200, ok.text
    turn = await http.post(
        "/conversation/process", json={"session_id": sid, "text": "Still there?"}
    )
    assert turn.status_code == 200, turn.text


@pytest.fixture
async def http(agent):
    async with client(agent) as http:
        yield http


@pytest.fixture
async def sid(http) -> str:
    return (await http.post("/conversation/start", json={"customer_id": "c"})).json()["session_id"]


WAV = speech_file("wav")
AU = encode_file(b"\x00\x01" * 16_000, 16_000, 1, "au", "pcm_s16be")  # a format not accepted
LONG = encode_file(b"\x00\x00" * 8_000 * 61, 8_000, 1, "wav", "pcm_s16le")  # 61 s, under 1 MB


@pytest.mark.parametrize(
    "name,data,status,message",
    [
        ("empty.wav", b"", 400, "audio_file is empty"),
        ("notes.txt", b"these are not the sounds you are looking for" * 20, 400, "could not be decoded"),
        ("a.au", AU, 400, "not a supported audio format"),
        ("cut.wav", WAV[:44], 400, "could not be decoded"),
        ("cut.webm", speech_file("webm")[:200], 400, "could not be decoded"),
        ("long.wav", LONG, 413, "longer than the limit of 60 seconds"),
    ],
)  # fmt: skip
async def test_unusable_audio(http, sid, fake_openai, name, data, status, message):
    for path, form in (
        ("/voice/speech-to-text", {}),
        ("/voice-agent/process", {"session_id": sid}),
    ):
        reply = await http.post(path, files={"audio_file": (name, data)}, data=form)
        assert reply.status_code == status, reply.text
        assert message in reply.json()["detail"]
    assert fake_openai.calls["transcriptions"] == 0  # refused before any provider call
    await still_works(http, sid)


async def test_upload_over_the_size_limit_is_413(http, sid):
    big = b"\x00" * (MAX_UPLOAD_BYTES + 1)
    reply = await http.post("/voice/speech-to-text", files={"audio_file": ("big.wav", big)})
    assert reply.status_code == 413 and "limit" in reply.json()["detail"]

    async def chunked():  # no Content-Length: the body is counted as it arrives
        yield b'--b\r\nContent-Disposition: form-data; name="audio_file"; filename="x.wav"\r\n\r\n'
        for _ in range(MAX_UPLOAD_BYTES // (1 << 20) + 2):
            yield b"\x00" * (1 << 20)
        yield b"\r\n--b--\r\n"

    reply = await http.post(
        "/voice/speech-to-text",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert reply.status_code == 413 and "limit" in reply.json()["detail"]
    await still_works(http, sid)


async def test_missing_fields_are_422(http, sid):
    wav = {"audio_file": ("a.wav", WAV, "audio/wav")}
    cases = [
        await http.post("/voice-agent/process", files=wav),  # no session_id
        await http.post("/voice-agent/process", data={"session_id": sid}),  # no audio_file
        await http.post("/voice/speech-to-text"),
        await http.post("/conversation/start", json={}),
        await http.post("/conversation/process", json={"session_id": sid}),
        await http.post("/conversation/process", json={"text": "hi"}),
        await http.post("/voice/text-to-speech", json={"format": "mp3"}),
    ]
    for reply in cases:
        assert reply.status_code == 422, reply.text
        fields = [e["loc"][-1] for e in reply.json()["detail"]]
        assert set(fields) & {"session_id", "audio_file", "customer_id", "text", "user_input"}
    await still_works(http, sid)


@pytest.mark.parametrize(
    "path,body,message",
    [
        ("/conversation/start", {"customer_id": "a\x00b"}, "NUL"),
        ("/conversation/start", {"customer_id": "   "}, "blank"),
        ("/conversation/start", {"customer_id": "x" * 201}, "at most 200"),
        ("/conversation/process", {"session_id": "s", "text": "x" * 4001}, "at most 4000"),
        ("/voice/text-to-speech", {"text": "hi", "format": "aiff"}, "mp3"),
        ("/voice/text-to-speech", {"text": "🍕🍕"}, "nothing speakable"),
    ],
)
async def test_invalid_values_are_422(http, sid, path, body, message):
    reply = await http.post(path, json=body)
    assert reply.status_code == 422 and message in str(reply.json()["detail"])
    await still_works(http, sid)


async def test_malformed_json_is_422_with_detail(http, sid):
    reply = await http.post(
        "/conversation/start",
        content=b'{"customer_id": "c"',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 422
    assert "JSON" in str(reply.json()["detail"])
    await still_works(http, sid)


async def test_unknown_session_is_404(http, sid):
    unknown = str(uuid.uuid4())
    reply = await http.post(
        "/voice-agent/process", files={"audio_file": ("a.wav", WAV)}, data={"session_id": unknown}
    )
    assert reply.status_code == 404 and unknown in reply.json()["detail"]
    await still_works(http, sid)


async def test_provider_failure_is_502_then_recovers(http, sid, fake_openai):
    fake_openai.inject("chat", Fault.status(500), Fault.status(500))  # the turn's try and retry
    reply = await http.post("/conversation/process", json={"session_id": sid, "text": "Hi"})
    assert reply.status_code == 502 and "chat provider failed" in reply.json()["detail"]
    fake_openai.inject("transcriptions", Fault.status(400, message="bad audio"))
    reply = await http.post("/voice/speech-to-text", files={"audio_file": ("a.wav", WAV)})
    assert reply.status_code == 502 and "bad audio" in reply.json()["detail"]
    await still_works(http, sid)


async def test_concurrent_turns_on_one_session_409_the_second(http, sid, fake_openai):
    fake_openai.latency["chat"] = 0.5
    first, second = await asyncio.gather(
        http.post("/conversation/process", json={"session_id": sid, "text": "One"}),
        http.post("/conversation/process", json={"session_id": sid, "text": "Two"}),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]
    busy = first if first.status_code == 409 else second
    assert "busy" in busy.json()["detail"]
    fake_openai.latency["chat"] = 0.0
    await still_works(http, sid)
