"""The Realtime edge (/v1/realtime) driven by the official `openai` SDK, every server event
parsed into the SDK's typed GA models: spoken, manual and text turns, barge-in, G.711, errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import numpy as np
from websockets.asyncio.client import connect as websockets_connect

from server.auth import keys
from server.persistence.database import Database
from server.realtime import g711
from testing.fakes.chat_script import ScriptedCall, ScriptedReply
from testing.realtime_client import Realtime, client
from testing.speech import speech_pcm
from testing.tools import WEATHER_SCHEMA


async def test_spoken_turn_with_server_vad(agent, fake_openai):
    fake_openai.transcripts.append("I want a large pizza")
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        created = await rt.next("session.created")
        session_id = created.session.id
        await rt.transcribe_input()
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


async def test_barge_in_cancels_and_truncate_trims_history(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0  # a long spoken reply, to talk over
    fake_openai.chat_replies.append(
        "We have small, medium and large pizzas with many toppings to choose from. "
        "The large one is our most popular size for families."
    )
    fake_openai.transcripts.extend(["What sizes do you have", "Stop"])
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        await rt.append_audio(speech_pcm("What sizes do you have", 24_000))
        first = await rt.next("response.output_audio.delta")
        await rt.next("response.output_audio.delta")  # some of the reply is playing
        await rt.append_audio(speech_pcm("Stop", 24_000))
        await rt.next("input_audio_buffer.speech_started")
        cut = await rt.next("response.done")
        assert cut.response.status == "cancelled"
        assert cut.response.status_details.reason == "turn_detected"
        played_ms = len(rt.audio()) / 2 / 24_000 * 1000 / 2  # the client played half of it
        await rt.send(type="conversation.item.truncate", item_id=first.item_id,
                      content_index=0, audio_end_ms=round(played_ms))  # fmt: skip
        truncated = await rt.next("conversation.item.truncated")
        assert truncated.item_id == first.item_id and truncated.audio_end_ms == round(played_ms)
        await rt.send(type="conversation.item.retrieve", item_id=first.item_id)
        kept = (await rt.next("conversation.item.retrieved")).item.content[0].transcript
        reply = "".join(e.delta for e in rt.of("response.output_audio_transcript.delta"))
        assert kept and reply.startswith(kept) and len(kept) < len(reply)
        await rt.next("response.done")  # the reply to "Stop"
    assistant = [m for m in chat_messages(fake_openai) if m["role"] == "assistant"]
    assert assistant == [{"role": "assistant", "content": kept}]  # history is what was played


async def test_g711_mulaw_in_and_out(agent, fake_openai):
    fake_openai.transcripts.append("Pepperoni please")
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        pcmu = {"type": "audio/pcmu"}
        await rt.send(type="session.update", session={"type": "realtime", "audio": {
            "input": {"format": pcmu}, "output": {"format": pcmu}}})  # fmt: skip
        updated = (await rt.next("session.updated")).session.audio
        assert (
            updated.input.format.type == "audio/pcmu" and updated.output.format.type == "audio/pcmu"
        )
        await rt.append_audio(g711.pcm_to_ulaw(speech_pcm("Pepperoni please", 8_000)), 160)
        assert (await rt.next("input_audio_buffer.speech_stopped")).audio_end_ms > 500
        done = await rt.next("response.done")
        assert done.response.output[0].content[0].transcript == "You said: Pepperoni please."
        ulaw = rt.audio()
        speech = [r for r in fake_openai.requests if r.endpoint == "speech"]
        assert speech  # the reply was synthesized, then sent as 8 kHz μ-law: one byte a sample
        pcm = np.frombuffer(g711.ulaw_to_pcm(ulaw), "<i2")
        assert 0.1 < len(ulaw) / 8_000 < 10 and np.abs(pcm).max() > 1000


def test_g711_tables_match_the_standard():
    codes = bytes(range(256))
    levels = np.frombuffer(g711.ulaw_to_pcm(codes), "<i2")
    assert levels[0] == -32124 and levels[0x80] == 32124 and levels[0xFF] == 0  # G.711 μ-law
    alaw = np.frombuffer(g711.alaw_to_pcm(codes), "<i2")
    assert alaw[0xD5] == 8 and alaw[0x55] == -8 and alaw[0xAA] == 32256  # G.711 A-law
    plus_zero = codes[:0x7F] + b"\xff" + codes[0x80:]  # -0 (0x7F) and +0 (0xFF): silence is +0
    assert g711.pcm_to_ulaw(g711.ulaw_to_pcm(codes)) == plus_zero  # every level encodes to itself
    assert g711.pcm_to_alaw(g711.alaw_to_pcm(codes)) == codes


async def test_tool_round_trip(agent, fake_openai):
    fake_openai.chat_replies.extend([
        ScriptedReply(tool_calls=[ScriptedCall("get_weather", {"city": "Paris"})]),
        "It is sunny in Paris.",
    ])  # fmt: skip
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        session_id = (await rt.next("session.created")).session.id
        await rt.send(type="session.update", session={"type": "realtime", "tools": [
            {"type": "function", "name": "get_weather", "description": "The weather in a city.",
             "parameters": WEATHER_SCHEMA}], "tool_choice": "auto"})  # fmt: skip
        assert (await rt.next("session.updated")).session.tools[0].name == "get_weather"
        await rt.send(type="conversation.item.create", item={"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "Weather in Paris?"}]})  # fmt: skip
        await rt.send(type="response.create")
        call = await rt.next("response.function_call_arguments.done")
        assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
        first = await rt.next("response.done")
        assert first.response.status == "completed"
        assert [(i.type, i.call_id) for i in first.response.output] == [
            ("function_call", call.call_id)
        ]
        await rt.send(
            type="conversation.item.create",
            item={
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": '{"sky": "sunny"}',
            },
        )
        added = await rt.next("conversation.item.added")
        assert added.item.type == "function_call_output"
        await rt.send(type="response.create")
        second = await rt.next("response.done")
        assert second.response.id != first.response.id and second.response.status == "completed"
        assert second.response.output[0].content[0].transcript == "It is sunny in Paris."
    messages = chat_messages(fake_openai)
    result = [m for m in messages if m["role"] == "tool"]
    assert result == [{"role": "tool", "tool_call_id": call.call_id, "content": '{"sky": "sunny"}'}]
    resume = {"session_id": session_id}  # the stored history keeps the call and its result
    async with client(agent.http_url).realtime.connect(model="m", extra_query=resume) as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        items = [(await rt.next("conversation.item.done")).item for _ in range(4)]
    assert [i.type for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]
    assert (
        items[1].call_id == items[2].call_id == call.call_id
        and items[2].output == '{"sky": "sunny"}'
    )


async def test_bad_events_get_errors_and_the_socket_stays_open(agent, fake_openai):
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")

        async def refused(**event) -> object:
            await rt.send(event_id="evt_bad", **event)
            error = (await rt.next("error")).error
            assert error.event_id == "evt_bad" and error.type == "invalid_request_error"
            return error

        error = await refused(type="session.teleport")
        assert error.param == "type" and "session.teleport" in error.message
        error = await refused(type="input_audio_buffer.append", audio="not base64!")
        assert error.param == "audio"
        error = await refused(type="input_audio_buffer.commit")  # server_vad commits itself
        assert error.param == "turn_detection"
        error = await refused(type="conversation.item.retrieve", item_id="item_nope")
        assert error.code == "item_not_found"
        error = await refused(type="response.cancel")
        assert error.code == "response_cancel_not_active"
        error = await refused(type="output_audio_buffer.clear")
        assert error.code == "unsupported_event"
        error = await refused(type="conversation.item.truncate", item_id="item_nope", colour=1)
        assert error.code == "unknown_parameter" and error.param == "colour"
        error = await refused(
            type="session.update", session={"turn_detection": {"type": "semantic_vad"}}
        )
        assert error.code == "unknown_parameter" and error.param == "session.turn_detection"
        # A partly supported update applies what it can and names the rest.
        await rt.send(type="session.update", event_id="evt_partly", session={
            "type": "realtime", "instructions": "Be brief.", "prompt": {"id": "pmpt_1"},
            "audio": {"input": {"noise_reduction": {"type": "near_field"}}}})  # fmt: skip
        named = {(await rt.next("error")).error.param for _ in range(2)}
        assert named == {"session.prompt", "session.audio.input.noise_reduction"}
        assert (await rt.next("session.updated")).session.instructions == "Be brief."
        await rt.send(type="conversation.item.create", item={"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": "Still there?"}]})  # fmt: skip
        await rt.send(type="response.create")
        assert (await rt.next("response.done")).response.status == "completed"


async def test_a_realtime_session_is_stored_listed_and_resumable(agent, fake_openai):
    async def text_turn(rt: Realtime, text: str) -> None:
        await rt.send(type="conversation.item.create", item={"type": "message", "role": "user",
                      "content": [{"type": "input_text", "text": text}]})  # fmt: skip
        await rt.send(type="response.create", response={"output_modalities": ["text"]})
        assert (await rt.next("response.done")).response.status == "completed"

    sdk = client(agent.http_url)
    async with sdk.realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        session_id = (await rt.next("session.created")).session.id
        await text_turn(rt, "A large pizza")
    resume = {"session_id": session_id}  # our extension: continue a stored session
    async with sdk.realtime.connect(model="gpt-realtime", extra_query=resume) as connection:
        rt = Realtime(connection)
        assert (await rt.next("session.created")).session.id == session_id
        history = [(await rt.next("conversation.item.done")).item for _ in range(2)]
        assert [(i.role, i.content[0].text) for i in history] == [
            ("user", "A large pizza"), ("assistant", "You said: A large pizza.")]  # fmt: skip
        await rt.send(type="conversation.item.delete", item_id=history[1].id)
        assert (await rt.next("conversation.item.deleted")).item_id == history[1].id
        await text_turn(rt, "And a lemonade")
    assert [m["content"] for m in chat_messages(fake_openai)[1:]] == [
        "A large pizza", "And a lemonade"]  # fmt: skip
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        listed = (await http.get("/sessions")).json()["sessions"]
        stored = (await http.get(f"/sessions/{session_id}")).json()
    assert session_id in [s["session_id"] for s in listed] and stored["turn_count"] == 2
    async with sdk.realtime.connect(model="m", extra_query={"session_id": "nope"}) as connection:
        error = (await Realtime(connection).next("error")).error
        assert error.code == "invalid_value" and "not a UUID" in error.message


async def test_keys_rule_the_realtime_socket(start_server, database_url):
    db = await Database.open(database_url, Path("."), pool_size=1)
    try:
        acme = (await keys.create(db.pool, "acme"))[0]
    finally:
        await db.close()
    agent = await start_server()
    async with client(agent.http_url, "vak_wrong").realtime.connect(model="m") as connection:
        error = (await Realtime(connection).next("error")).error
        assert error.code == "invalid_api_key"
    async with client(agent.http_url, acme).realtime.connect(model="m") as connection:
        session_id = (await Realtime(connection).next("session.created")).session.id
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        mine = await http.get(
            f"/sessions/{session_id}", headers={"Authorization": f"Bearer {acme}"}
        )
        anonymous = await http.get(f"/sessions/{session_id}")
    assert mine.status_code == 200 and anonymous.status_code == 401
    async with httpx.AsyncClient(
        base_url=agent.http_url, headers={"Authorization": f"Bearer {acme}"}
    ) as http:
        token = (await http.post("/v1/client-tokens", json={"verbs": ["converse"]})).json()["token"]
    url = agent.http_url.replace("http://", "ws://") + "/v1/realtime?model=m"
    browser = ["realtime", f"openai-insecure-api-key.{token}"]  # what a page offers, as with OpenAI
    async with websockets_connect(url, subprotocols=browser) as socket:
        assert socket.subprotocol == "realtime"
        assert json.loads(await socket.recv())["type"] == "session.created"
    async with websockets_connect(
        url, subprotocols=["realtime", f"openai-insecure-api-key.{acme}"]
    ) as socket:
        refused = json.loads(await socket.recv())  # an API key is never taken from a page
        assert refused["type"] == "error" and refused["error"]["code"] == "invalid_api_key"


async def test_offline_spoken_turn_without_a_key(start_server):
    server = await start_server(
        fake=None, stt_provider="local", chat_provider="local", tts_provider="local",
        local_chat_max_sentences=1, local_tts_rate_wpm=350,
    )  # fmt: skip
    async with client(server.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        await rt.transcribe_input()
        await rt.append_audio(speech_pcm("I want to order a large pepperoni pizza", 24_000))
        heard = await rt.next("conversation.item.input_audio_transcription.completed")
        done = await rt.next("response.done")
    assert "pizza" in heard.transcript.lower()
    assert done.response.status == "completed" and done.response.output[0].content[0].transcript
    assert len(rt.audio()) / 2 / 24_000 > 0.5  # the local voice spoke the reply


async def test_idle_timeout_prompts_a_response(agent, fake_openai):
    fake_openai.chat_replies.extend(["Hello!", "Are you still there?"])
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        await rt.send(type="session.update", session={"type": "realtime", "output_modalities": ["text"],
            "audio": {"input": {"turn_detection": {"type": "server_vad", "idle_timeout_ms": 5000,
                                                   "create_response": False}}}})  # fmt: skip
        vad = (await rt.next("session.updated")).session.audio.input.turn_detection
        assert vad.idle_timeout_ms == 5000 and vad.create_response is False
        await rt.send(type="response.create")
        assert (await rt.next("response.done")).response.output[0].content[0].text == "Hello!"
        timeout = await rt.next("input_audio_buffer.timeout_triggered")
        assert timeout.audio_end_ms >= timeout.audio_start_ms
        prompted = await rt.next("response.done")
        assert prompted.response.output[0].content[0].text == "Are you still there?"


async def test_server_vad_without_auto_response_or_interruption(agent, fake_openai):
    fake_openai.tts_ms_per_char = 40.0  # a reply long enough to talk over
    fake_openai.chat_replies.append("We have small, medium and large pizzas, all freshly made.")
    fake_openai.transcripts.extend(["What sizes", "Hmm"])
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        await rt.send(type="session.update", session={"type": "realtime", "audio": {"input": {
            "transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "create_response": False,
                               "interrupt_response": False}}}})  # fmt: skip
        await rt.next("session.updated")
        await rt.append_audio(speech_pcm("What sizes", 24_000))
        heard = await rt.next("conversation.item.input_audio_transcription.completed")
        assert heard.transcript == "What sizes" and not rt.of("response.created")
        await rt.send(type="response.create")
        await rt.next("response.output_audio.delta")
        await rt.append_audio(speech_pcm("Hmm", 24_000))  # talking over the reply...
        await rt.next("input_audio_buffer.speech_started")
        done = await rt.next("response.done")
        assert done.response.status == "completed"  # ...does not cut it
        kind = "conversation.item.input_audio_transcription.completed"
        second = rt.of(kind)[1:] or [await rt.next(kind)]  # it may have come during the reply
        assert second[0].transcript == "Hmm"
    assert chat_messages(fake_openai)[-1] == {"role": "user", "content": "What sizes"}


async def test_an_idle_session_is_told_why_it_ends(start_server):
    agent = await start_server(session_idle_timeout_s=1.0)
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        session_id = (await rt.next("session.created")).session.id
        error = (await rt.next("error")).error  # nothing said or sent for a second
        assert error.code == "session_idle" and "session_id" in error.message
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        stored = (await http.get(f"/sessions/{session_id}")).json()
    assert stored["ended_at"] is None  # idle is resumable


async def test_audio_item_then_a_cancelled_response(agent, fake_openai):
    fake_openai.transcripts.append("Tell me a long story")
    fake_openai.chat_token_delay = 0.2  # a slow reply, to cancel midway
    fake_openai.chat_replies.append("Once upon a time there was a pizza that wanted to travel.")
    async with client(agent.http_url).realtime.connect(model="gpt-realtime") as connection:
        rt = Realtime(connection)
        await rt.next("session.created")
        audio = base64.b64encode(g711.pcm_to_alaw(speech_pcm("Tell me a long story", 8_000)))
        await rt.send(type="session.update", session={"type": "realtime", "audio": {"input": {
            "format": {"type": "audio/pcma"}, "transcription": {"model": "whisper-1"}}}})  # fmt: skip
        await rt.next("session.updated")
        await rt.send(type="conversation.item.create", item={"type": "message", "role": "user",
                      "content": [{"type": "input_audio", "audio": audio.decode()}]})  # fmt: skip
        heard = await rt.next("conversation.item.input_audio_transcription.completed")
        assert heard.transcript == "Tell me a long story"
        await rt.send(type="response.create", response={"output_modalities": ["text"]})
        await rt.next("response.output_text.delta")
        await rt.send(type="response.cancel")
        done = await rt.next("response.done")
        assert done.response.status == "cancelled"
        assert done.response.status_details.reason == "client_cancelled"
        assert done.response.output[0].status == "incomplete"
    sent = [r for r in fake_openai.requests if r.endpoint == "transcriptions"][0].audio
    assert sent is not None and sent.duration_s > 0.5  # the A-law item, decoded, was heard
