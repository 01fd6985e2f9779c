"""STT_EAGER: transcription starts during the VAD's stop wait, and its result is the turn's.

The caller talks in real time (a frame every 20 ms, as a phone or browser would), the fake's
transcription takes 0.8 s, and the VAD waits 600 ms of silence before it decides. Without
eager transcription the transcript can only come 0.8 s or more after the VAD decided; with
it the call was already under way, so it comes sooner, and no second call is made.
"""

from __future__ import annotations

import asyncio

from testing.converse_client import Conversation, config, speech_requests

STT_LATENCY_S = 0.8


async def speak_in_real_time(convo: Conversation, words: str) -> None:
    """Send an utterance frame by frame at its own pace (a live caller, not a timing wait)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, request in enumerate(speech_requests(words, tail_silence_ms=1200)):
        await asyncio.sleep(max(0.0, start + i * 0.020 - loop.time()))
        convo.send(request)


async def test_eager_transcript_is_ready_sooner_than_the_call_takes(start_server, fake_openai):
    agent = await start_server(stt_eager=True)
    fake_openai.latency["transcriptions"] = STT_LATENCY_S
    fake_openai.transcripts.append("I want a pizza")
    convo = Conversation(agent.stub, config())
    await convo.until("session_started")
    await speak_in_real_time(convo, "I want a pizza")
    done = (await convo.until("turn_completed")).turn_completed
    transcripts = convo.of("transcript")
    assert [t.text for t in transcripts] == ["I want a pizza"]
    assert fake_openai.calls["transcriptions"] == 1, "the early call's result was used"
    assert 0 < done.latency.vad_stop_to_transcript_ms < STT_LATENCY_S * 1000
    convo.close_input()
    await convo.rest()


async def test_caller_speaking_on_after_a_pause_gets_one_turn_of_everything(
    start_server, fake_openai
):
    """A pause longer than the pad but shorter than the stop wait: an early call starts and is
    dropped when the caller goes on; the turn is transcribed from the whole utterance."""
    agent = await start_server(stt_eager=True)
    convo = Conversation(agent.stub, config())
    await convo.until("session_started")
    first = speech_requests("I want", tail_silence_ms=400)
    second = speech_requests("a large pizza", lead_silence_ms=0, tail_silence_ms=1200)
    convo.send(*first, *second)
    await convo.until("turn_completed")
    assert len(convo.of("speech_stopped")) == 1, "one utterance, despite the pause"
    sizes = [r.audio.size_bytes for r in fake_openai.requests if r.audio is not None]
    assert sizes, "the utterance was transcribed"
    assert all(size < sizes[-1] for size in sizes[:-1]), "any other call had only the first part"
    assert len(convo.of("turn_completed")) == 1
    convo.close_input()
    await convo.rest()
