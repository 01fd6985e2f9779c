"""The OpenAI SDK's own floor for one turn: the three calls a turn makes, and nothing else.

The voice-to-voice share counts the SDK's client-side time as the framework's. To tell the
two apart, the providers the server builds (server.providers.build_providers: the same
OpenAI classes, client, timeout and retries) make a turn's calls against a fake of the same
latencies in a process of its own, one turn at a time with a pause between turns as a caller
leaves one: speech-to-text of the utterance, chat to its first token, text-to-speech to its
first audio bytes. What is left of the share after this floor is the framework's own.
"""

from __future__ import annotations

import asyncio
import time

from bench.stack import FakeSettings
from pipeline.conversation import DEFAULT_INSTRUCTIONS
from pipeline.providers.base import ChatMessage
from server.config import Settings
from server.providers import build_providers
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
    settings = Settings(  # the server's defaults, no .env file: a developer's cannot swap in
        _env_file=None,  # local models or another server
        openai_api_key="bench",
        openai_base_url=base_url,
        stt_provider="openai",
        chat_provider="openai",
        tts_provider="openai",
    )
    providers = build_providers(settings)  # as the server builds them: the same client
    stt, chat, tts = providers.stt, providers.chat, providers.tts
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
        await providers.aclose()
    return out
