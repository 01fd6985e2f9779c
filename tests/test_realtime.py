"""The Realtime edge (/v1/realtime) driven by the official `openai` SDK, every server event
parsed into the SDK's typed GA models: spoken, manual and text turns, barge-in, G.711, errors."""

from __future__ import annotations

import httpx

from testing.realtime_client import Realtime, client
from testing.speech import speech_pcm


async def test_spoken_turn_with_server_vad(agent, fake_openai):
    fake_openai.transcripts.append("I want a large pizza")
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        created = await rt.next("session.created")
        session_id = created.session.id
        await rt.send(
            type="session.update",
            session={
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            },
        )
        await rt.next("session.updated")
        await rt.append_audio(speech_pcm("I want a large pizza", 24_000))
        started = await rt.next("input_audio_buffer.speech_started")
        stopped = await rt.next("input_audio_buffer.speech_stopped")
        assert stopped.item_id == started.item_id and stopped.audio_end_ms > started.audio_start_ms
        heard = await rt.next("conversation.item.input_audio_transcription.completed")
        assert heard.item_id == started.item_id and heard.transcript == "I want a large pizza"
        done = await rt.next("response.done")
        assert done.response.status == "completed"
        assert done.response.output[0].content[0].transcript == "You said: I want a large pizza."
        assert len(rt.audio()) / 2 / 24_000 > 0.1
        deltas = "".join(e.delta for e in rt.of("response.output_audio_transcript.delta"))
        assert deltas == "You said: I want a large pizza."
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        stored = (await http.get(f"/sessions/{session_id}")).json()
    assert stored["turn_count"] == 1
