"""The fake OpenAI server, driven by the real ``openai.AsyncOpenAI`` SDK over loopback HTTP."""

from __future__ import annotations

import io
import wave

import aiohttp
import httpx2
import openai
import pytest

from testing.fakes import FakeOpenAI, Fault


def _client(fake: FakeOpenAI, *, max_retries: int = 0, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="test", base_url=fake.base_url, max_retries=max_retries, timeout=timeout
    )


def _wav(seconds: float, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * int(seconds * rate))
    return out.getvalue()


async def _chat_stream(client: openai.AsyncOpenAI, text: str = "hi") -> list[str]:
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": text}], stream=True
    )
    return [c.choices[0].delta.content or "" async for c in stream if c.choices]


async def test_transcription_records_wav_upload():
    async with FakeOpenAI() as fake:
        fake.transcripts.append("turn on the lights")
        async with _client(fake) as client:
            result = await client.audio.transcriptions.create(
                model="gpt-4o-mini-transcribe",
                file=("utt.wav", _wav(0.5), "audio/wav"),
                language="en",
            )
            default = await client.audio.transcriptions.create(
                model="whisper-1", file=("b.wav", _wav(0.25)), response_format="text"
            )
            verbose = await client.audio.transcriptions.create(
                model="whisper-1", file=("c.wav", _wav(0.25)), response_format="verbose_json"
            )
    assert result.text == "turn on the lights"
    assert default.strip() == "hello there"
    assert verbose.text == "hello there" and verbose.duration == pytest.approx(0.25)
    first = fake.requests[0]
    assert first.endpoint == "transcriptions"
    assert first.body["model"] == "gpt-4o-mini-transcribe" and first.body["language"] == "en"
    assert first.audio is not None and first.audio.filename == "utt.wav"
    assert first.audio.sample_rate == 16_000 and first.audio.channels == 1
    assert first.audio.duration_s == pytest.approx(0.5)
    assert len(first.audio.pcm) == 16_000
    assert fake.calls["transcriptions"] == 3


async def test_non_wav_upload_has_no_audio_format():
    async with FakeOpenAI() as fake, _client(fake) as client:
        await client.audio.transcriptions.create(model="whisper-1", file=("x.mp3", b"ID3junk"))
    audio = fake.requests[0].audio
    assert audio is not None and audio.size_bytes == 7
    assert audio.sample_rate is None and audio.duration_s is None


async def test_streaming_chat_yields_scripted_reply():
    async with FakeOpenAI() as fake, _client(fake) as client:
        fake.chat_replies.append("Sure, the lights are on now.")
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "lights on please"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        default = await _chat_stream(client, "what time is it")
    deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(deltas) == "Sure, the lights are on now."
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert "".join(default) == "You said: what time is it."
    assert fake.requests[0].body["messages"][-1] == {"role": "user", "content": "lights on please"}


async def test_non_streaming_chat_and_models():
    async with FakeOpenAI() as fake, _client(fake) as client:
        completion = await client.chat.completions.create(
            model="my-llm", messages=[{"role": "user", "content": "ping"}]
        )
        models = await client.models.list()
    assert completion.choices[0].message.content == "You said: ping."
    assert "my-llm" in [m.id for m in models.data]


async def test_speech_streams_pcm_of_expected_length():
    text = "Hello from the fake."
    async with FakeOpenAI() as fake, _client(fake) as client:
        async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=text, response_format="pcm"
        ) as response:
            assert response.headers["content-type"] == "audio/pcm"
            parts = [p async for p in response.iter_bytes()]
        wav = await client.audio.speech.create(
            model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="wav"
        )
        with pytest.raises(openai.BadRequestError, match="pcm"):
            await client.audio.speech.create(model="m", voice="alloy", input="hi")
        with pytest.raises(openai.BadRequestError):
            await client.audio.speech.create(
                model="m", voice="alloy", input="", response_format="pcm"
            )
    data = b"".join(parts)
    expected_s = len(text) * 20.0 / 1000
    assert len(data) == int(expected_s * 24_000 * 2) and len(data) % 2 == 0
    with wave.open(io.BytesIO(wav.content)) as w:  # "hi" is shorter than the 100 ms floor
        assert (w.getframerate(), w.getnframes()) == (24_000, 2_400)
    assert fake.requests[0].body["input"] == text


async def test_429_with_retry_after_then_success():
    async with FakeOpenAI() as fake, _client(fake, max_retries=2) as client:
        fake.inject("chat", Fault.status(429, retry_after=0.05))
        assert "".join(await _chat_stream(client)) == "You said: hi."
    assert fake.calls["chat"] == 2


async def test_500_without_retries_raises():
    async with FakeOpenAI() as fake, _client(fake) as client:
        fake.inject("chat", Fault.status(500, message="boom"))
        with pytest.raises(openai.InternalServerError, match="boom"):
            await _chat_stream(client)


async def test_missing_api_key_is_401():
    async with (
        FakeOpenAI() as fake,
        aiohttp.ClientSession() as http,
        http.get(f"{fake.base_url}/models") as resp,  # no Authorization header
    ):
        status, body = resp.status, await resp.json()
    assert status == 401 and body["error"]["code"] == "invalid_api_key"


async def test_stall_times_out():
    async with FakeOpenAI() as fake, _client(fake, timeout=0.3) as client:
        fake.inject("transcriptions", Fault.stall())
        with pytest.raises(openai.APITimeoutError):
            await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", _wav(0.1)))


async def test_drop_is_connection_error():
    async with FakeOpenAI() as fake, _client(fake) as client:
        fake.inject("speech", Fault.drop())
        with pytest.raises(openai.APIConnectionError):
            await client.audio.speech.create(
                model="m", voice="alloy", input="hi", response_format="pcm"
            )
        assert fake.calls["speech"] == 1


async def test_drop_mid_stream_chat_raises_after_first_chunks():
    async with FakeOpenAI() as fake, _client(fake) as client:
        fake.chat_replies.append("one two three four five")
        fake.inject("chat", Fault.drop_mid_stream(after_chunks=3))
        received: list[str] = []
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content)
    assert received == ["", "one ", "two "]


async def test_drop_mid_stream_speech_raises():
    async with FakeOpenAI() as fake, _client(fake) as client:
        fake.tts_chunk_bytes = 960
        fake.inject("speech", Fault.drop_mid_stream(after_chunks=2))
        got = b""
        # with_streaming_response surfaces the raw transport error, unwrapped by the SDK.
        with pytest.raises((openai.APIConnectionError, httpx2.TransportError)):
            async with client.audio.speech.with_streaming_response.create(
                model="m", voice="alloy", input="long enough input", response_format="pcm"
            ) as response:
                async for part in response.iter_bytes():
                    got += part
    assert len(got) == 1920
