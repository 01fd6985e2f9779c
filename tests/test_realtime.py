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


def chat_messages(fake) -> list[dict]:
    """The messages of the last chat request the fake OpenAI received."""
    return [r for r in fake.requests if r.endpoint == "chat"][-1].body["messages"]


async def turns(agent, session_id: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        response = await http.get(f"/sessions/{session_id}/turns")
    assert response.status_code == 200, response.text
    return response.json()["turns"]


async def test_manual_commit_then_response_create(agent, fake_openai):
    fake_openai.transcripts.append("Two margherita pizzas")
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        session_id = (await rt.next("session.created")).session.id
        await rt.send(type="session.update", session={"type": "realtime", "audio": {"input": {
            "turn_detection": None, "transcription": {"model": "whisper-1"}}}})  # fmt: skip
        updated = await rt.next("session.updated")
        assert updated.session.audio.input.turn_detection is None
        await rt.append_audio(speech_pcm("Two margherita pizzas", 24_000))
        await rt.send(type="input_audio_buffer.commit", event_id="evt_commit")
        committed = await rt.next("input_audio_buffer.committed")
        heard = await rt.next("conversation.item.input_audio_transcription.completed")
        assert heard.item_id == committed.item_id and heard.transcript == "Two margherita pizzas"
        item = (await rt.next("conversation.item.done")).item
        assert item.role == "user" and item.content[0].transcript == "Two margherita pizzas"
        assert not rt.of("response.created")  # a manual commit waits for response.create
        await rt.send(type="response.create")
        done = await rt.next("response.done")
        assert done.response.status == "completed"
        assert done.response.output[0].content[0].transcript == "You said: Two margherita pizzas."
    stored = await turns(agent, session_id)
    assert [(t["role"], t["text"]) for t in stored] == [
        ("user", "Two margherita pizzas"),
        ("agent", "You said: Two margherita pizzas."),
    ]


async def test_text_turn_with_text_only_output(agent, fake_openai):
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        await rt.send(type="session.update", session={"type": "realtime",
                                                      "output_modalities": ["text"]})  # fmt: skip
        assert (await rt.next("session.updated")).session.output_modalities == ["text"]
        await rt.send(type="conversation.item.create", item={
            "type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What sizes do you have?"}]})  # fmt: skip
        added = await rt.next("conversation.item.added")
        assert added.item.content[0].text == "What sizes do you have?"
        await rt.next("conversation.item.done")
        await rt.send(type="response.create", response={"instructions": "Answer in French."})
        created = await rt.next("response.created")
        assert created.response.output_modalities == ["text"]
        text = await rt.next("response.output_text.done")
        done = await rt.next("response.done")
        assert text.text == "You said: What sizes do you have?."
        assert done.response.output[0].content[0].text == text.text
        assert "".join(e.delta for e in rt.of("response.output_text.delta")) == text.text
        assert not rt.of("response.output_audio.delta")
        assert done.response.usage.output_tokens > 0
        assert (await rt.next("rate_limits.updated")).rate_limits[0].name == "requests"
    messages = chat_messages(fake_openai)
    assert messages[0] == {"role": "system", "content": "Answer in French."}
    assert messages[-1] == {"role": "user", "content": "What sizes do you have?"}
    assert not [r for r in fake_openai.requests if r.endpoint == "speech"]  # no TTS work
