"""REST voice endpoints with real speech in real formats (made with PyAV from eSpeak audio):
speech to text, text to speech, and the whole voice-agent turn, incl. the README example."""

from __future__ import annotations

import asyncio
import base64
import io
import textwrap

import av
import httpx
import numpy as np
import pytest

from testing.speech import speech_pcm

SPOKEN = "I want to order a pizza"
# (container, codec, file name, content type)
FORMATS = {
    "wav": ("wav", "pcm_s16le", "audio.wav", "audio/wav"),
    "mp3": ("mp3", "libmp3lame", "audio.mp3", "audio/mpeg"),
    "webm": ("webm", "libopus", "audio.webm", "audio/webm"),
    "ogg": ("ogg", "libopus", "audio.ogg", "audio/ogg"),
    "flac": ("flac", "flac", "audio.flac", "audio/flac"),
}


def encode_file(
    pcm: bytes, rate: int, channels: int, container: str, codec: str, out_rate: int | None = None
) -> bytes:
    """Interleaved int16 PCM -> an audio file, the way a recorder would write it."""
    layout = "mono" if channels == 1 else "stereo"
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate or rate, layout=layout)
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def speech_file(kind: str, text: str = SPOKEN, rate: int = 16_000, channels: int = 1) -> bytes:
    container, codec, _, _ = FORMATS[kind]
    out_rate = 48_000 if codec == "libopus" else None
    pcm = speech_pcm(text, sample_rate=rate, channels=channels, tail_silence_ms=300)
    return encode_file(pcm, rate, channels, container, codec, out_rate)


def client(agent, timeout: float = 30) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=agent.http_url, timeout=timeout)


def decode_all(data: bytes) -> tuple[str, int, float]:
    """(container, sample rate, seconds) of an audio file."""
    with av.open(io.BytesIO(data)) as f:
        stream = f.streams.audio[0]
        samples = sum(frame.samples for frame in f.decode(stream))
        return f.format.name, stream.rate, samples / stream.rate


@pytest.mark.parametrize("kind", list(FORMATS))
async def test_speech_to_text_accepts_each_format(agent, fake_openai, kind):
    fake_openai.transcripts.append(SPOKEN)
    _, _, name, ctype = FORMATS[kind]
    async with client(agent) as http:
        reply = await http.post(
            "/voice/speech-to-text", files={"audio_file": (name, speech_file(kind), ctype)}
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["text"] == SPOKEN and body["language"] == "en"
    expected = len(speech_pcm(SPOKEN, tail_silence_ms=300)) / 32_000
    assert abs(body["duration"] - expected) < 0.1
    sent = fake_openai.requests[-1].audio  # what the STT provider got: 16 kHz mono WAV
    assert (sent.sample_rate, sent.channels) == (16_000, 1)
    assert abs(sent.duration_s - body["duration"]) < 0.01


async def test_speech_to_text_mixes_stereo_48k_down_to_16k_mono(agent, fake_openai):
    pcm = speech_pcm(SPOKEN, sample_rate=48_000, channels=2)
    data = encode_file(pcm, 48_000, 2, "wav", "pcm_s16le")
    async with client(agent) as http:
        reply = await http.post("/voice/speech-to-text", files={"audio_file": ("a.wav", data)})
    assert reply.status_code == 200, reply.text
    sent = fake_openai.requests[-1].audio
    assert (sent.sample_rate, sent.channels) == (16_000, 1)
    mono16k = np.frombuffer(sent.pcm, dtype="<i2")
    assert np.abs(mono16k).max() > 1000  # the speech survived the down-mix


@pytest.mark.parametrize(
    "fmt,container,media",
    [
        (None, "mp3", "audio/mpeg"),
        ("wav", "wav", "audio/wav"),
        ("opus", "ogg", "audio/ogg"),
        ("flac", "flac", "audio/flac"),
    ],
)
async def test_text_to_speech_formats(agent, fake_openai, fmt, container, media):
    body = {"text": "Your pizza is on its way."} | ({"format": fmt} if fmt else {})
    async with client(agent) as http:
        reply = await http.post("/voice/text-to-speech", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == media
    kind, _, seconds = decode_all(reply.content)
    expected = len(body["text"]) * fake_openai.tts_ms_per_char / 1000
    assert kind == container and abs(seconds - expected) < 0.08
    assert fake_openai.requests[-1].body["input"] == "Your pizza is on its way."


async def test_text_to_speech_pcm_is_raw_with_its_rate(agent, fake_openai):
    async with client(agent) as http:
        reply = await http.post(
            "/voice/text-to-speech", json={"text": "Hello there.", "format": "pcm", "voice": "nova"}
        )
    assert reply.status_code == 200
    assert (
        reply.headers["x-sample-rate"] == "24000" and reply.headers["content-type"] == "audio/pcm"
    )
    ms = max(100.0, len("Hello there.") * fake_openai.tts_ms_per_char)  # the fake's minimum
    assert len(reply.content) == 2 * round(ms * 24)
    assert fake_openai.requests[-1].body["voice"] == "nova"


async def test_voice_agent_process_runs_one_whole_turn(agent, fake_openai):
    fake_openai.transcripts.append(SPOKEN)
    async with client(agent) as http:
        start = await http.post("/conversation/start", json={"customer_id": "customer123"})
        sid = start.json()["session_id"]
        reply = await http.post(
            "/voice-agent/process",
            files={"audio_file": ("audio.webm", speech_file("webm"), "audio/webm")},
            data={"session_id": sid},
        )
        assert reply.status_code == 200, reply.text
        result = reply.json()
        assert result["session_id"] == sid and result["turn_index"] == 1
        assert result["user_input"] == SPOKEN
        assert result["agent_response"] == f"You said: {SPOKEN}."
        assert result["audio_format"] == "mp3"
        kind, rate, seconds = decode_all(base64.b64decode(result["audio_base64"]))
        assert kind == "mp3" and rate == 24_000
        assert abs(seconds * 1000 - result["audio_duration_ms"]) < 60
        assert result["latency"]["llm_first_token_ms"] >= 0

        turns = (await http.get(f"/sessions/{sid}/turns")).json()["turns"]
        assert [(t["role"], t["text"]) for t in turns] == [
            ("user", SPOKEN),
            ("agent", f"You said: {SPOKEN}."),
        ]
        assert turns[0]["end_offset_ms"] > 0


README_EXAMPLE = textwrap.dedent(
    """
    import requests

    # Start conversation
    response = requests.post("http://localhost:8000/conversation/start",
                            json={"customer_id": "customer123"})
    session_id = response.json()["session_id"]

    # Process voice input
    with open("audio.wav", "rb") as f:
        response = requests.post("http://localhost:8000/voice-agent/process",
                               files={"audio_file": f},
                               data={"session_id": session_id})

        result = response.json()
        print(f"User said: {result['user_input']}")
        print(f"Agent responded: {result['agent_response']}")
    """
)


async def test_original_readme_example_runs_as_written(agent, fake_openai, tmp_path, monkeypatch):
    fake_openai.transcripts.append(SPOKEN)
    (tmp_path / "audio.wav").write_bytes(speech_file("wav"))
    monkeypatch.chdir(tmp_path)
    code = README_EXAMPLE.replace("http://localhost:8000", agent.http_url)  # the test's port
    printed: list[str] = []
    scope = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
    await asyncio.to_thread(exec, code, scope)
    assert printed == [f"User said: {SPOKEN}", f"Agent responded: You said: {SPOKEN}."]
