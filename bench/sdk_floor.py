"""The OpenAI SDK's own floor for one turn: the three calls a turn makes, and nothing else.

The voice-to-voice share counts the SDK's client-side time as the framework's. To tell the
two apart, the same provider classes the server uses (pipeline.providers.openai_api, with a
client built as server/providers.py builds it) make a turn's calls against a fake of the same
latencies in a process of its own, one turn at a time with a pause between turns as a caller
leaves one: speech-to-text of the utterance, chat to its first token, text-to-speech to its
first audio bytes. What is left of the share after this floor is the framework's own.
"""

from __future__ import annotations

import asyncio
import time

import openai

from bench.stack import FakeSettings
from pipeline.conversation import DEFAULT_INSTRUCTIONS
from pipeline.providers.base import ChatMessage
from pipeline.providers.openai_api import OpenAIChat, OpenAISpeechToText, OpenAITextToSpeech
from server.config import Settings
from testing.speech import speech_pcm

RATE = 16_000
REPLY = "Sure, I can help with that."


async def sdk_turns(
    base_url: str, fake: FakeSettings, utterance: str, turns: int, gap_s: float
) -> dict[str, list[float]]:
    """ms beyond the fake's latency, per turn, for "stt", "llm" (first token), "tts" (first
    bytes); the first two turns warm the connections and are not counted."""
    pcm = speech_pcm(utterance, RATE, 1, lead_silence_ms=300, tail_silence_ms=200)
    messages = [ChatMessage("system", DEFAULT_INSTRUCTIONS), ChatMessage("user", utterance)]
    defaults = Settings.model_fields  # the server's own timeout and retries
    client = openai.AsyncOpenAI(
        api_key="bench",
        base_url=base_url,
        timeout=defaults["openai_timeout_s"].default,
        max_retries=defaults["openai_max_retries"].default,
    )
    stt = OpenAISpeechToText(client, "whisper-1", None)
    chat = OpenAIChat(client, "gpt-4o-mini", 256)
    tts = OpenAITextToSpeech(client, "tts-1", "alloy")
    out: dict[str, list[float]] = {"stt": [], "llm": [], "tts": []}
    try:
        for turn in range(turns + 2):
            await asyncio.sleep(gap_s)
            t0 = time.perf_counter()
            await stt.transcribe(pcm, RATE)
            t1 = time.perf_counter()
            first = None
            async for _ in chat.stream(messages):
                first = first or time.perf_counter()
            t2 = time.perf_counter()
            got = None
            async for _ in tts.stream(REPLY):
                got = got or time.perf_counter()
            if turn >= 2 and first is not None and got is not None:
                out["stt"].append((t1 - t0 - fake.stt_latency_s) * 1000)
                out["llm"].append((first - t1 - fake.chat_latency_s) * 1000)
                out["tts"].append((got - t2 - fake.tts_latency_s) * 1000)
    finally:
        await client.close()
    return out
