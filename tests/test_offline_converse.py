"""A whole spoken conversation offline: local STT, chat and TTS behind the real gRPC server."""

from __future__ import annotations

import base64
import io

import av
import httpx

from testing.converse_client import Conversation, config, speech_requests
from testing.speech import speech_pcm, write_wav


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


async def test_offline_turn_through_the_rest_api(start_server, tmp_path):
    """The original REST example's call, answered entirely by the local models."""
    server = await start_server(
        fake=None, stt_provider="local", chat_provider="local", tts_provider="local",
        local_chat_max_sentences=1,
    )  # fmt: skip
    wav = tmp_path / "audio.wav"
    write_wav(wav, speech_pcm("I want to order a large pepperoni pizza", 22_050), 22_050, 1)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as http:
        started = await http.post("/conversation/start", json={"customer_id": "customer123"})
        session_id = started.json()["session_id"]
        with wav.open("rb") as f:
            reply = await http.post(
                "/voice-agent/process", files={"audio_file": f}, data={"session_id": session_id}
            )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert "pizza" in result["user_input"].lower()
    assert result["agent_response"].strip()
    mp3 = base64.b64decode(result["audio_base64"])
    with av.open(io.BytesIO(mp3)) as container:
        assert container.format.name == "mp3"
        seconds = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    assert seconds > 0.5  # the reply was spoken
