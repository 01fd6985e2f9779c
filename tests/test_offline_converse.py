"""A whole spoken conversation offline: local STT, chat and TTS behind the real gRPC server."""

from __future__ import annotations

from tests.converse_client import Conversation, config, speech_requests


async def test_offline_spoken_turn_from_audio_to_agent_audio(start_server):
    server = await start_server(
        fake=None,
        stt_provider="local",
        chat_provider="local",
        tts_provider="local",
        # Agent audio is paced in real time: a short, quick reply keeps the test short.
        local_chat_max_sentences=1,
        local_tts_rate_wpm=350,
    )
    convo = Conversation(server.stub, config(output_rate=16_000))
    started = await convo.until("session_started")
    providers = started.session_started.providers
    assert (providers.stt, providers.chat, providers.tts) == (
        "local/faster-whisper-tiny.en",
        "local/smollm2-135m",
        "local/espeak-ng",
    )
    convo.send(*speech_requests("I want to order a large pepperoni pizza"))
    done = (await convo.until("turn_completed")).turn_completed
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()).name == "OK"

    assert not convo.of("error"), convo.of("error")
    assert "pizza" in convo.of("transcript")[0].text.lower()
    assert "pizza" in done.user_text.lower()
    reply = "".join(d.text for d in convo.of("agent_text_delta"))
    assert reply.strip() and done.agent_text == reply
    audio = b"".join(a.audio for a in convo.of("agent_audio"))
    assert len(audio) / 2 / 16_000 > 0.5  # the reply was spoken
    assert done.agent_audio_ms == round(len(audio) / 2 / 16_000 * 1000)
