"""Call recordings on a real server: a spoken gRPC conversation recorded and downloaded, the
tenant check, WebSocket opt-in, retention, and the hand-over hook and webhook."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import time
import uuid
import wave

import av
import httpx
import numpy as np
import pytest
from aiohttp import web
from pydantic import ValidationError
from voiceagent.v1 import converse_pb2
from websockets.asyncio.client import connect

from server.config import Settings
from server.recordings.service import Recordings
from server.sessions.ids import CLIENT_ID_NAMESPACE
from testing.converse_client import Conversation, config, control, text
from testing.speech import frames, speech_pcm
from tests.test_auth import http, make_key, text_session
from tests.test_http_voice import speech_file
from tests.test_ws import Ws, ws_url

TIMEOUT = 30.0
RATE = 16_000  # RECORDING_SAMPLE_RATE's default
END_OF_INPUT = converse_pb2.CONTROL_ACTION_END_OF_INPUT
HOOK_CALLS: list[tuple[str, dict]] = []


def remember_recording(path, metadata: dict) -> None:
    """RECORDING_HOOK of test_finished_recordings_reach_the_hook_and_the_webhook."""
    HOOK_CALLS.append((str(path), metadata))


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """A WAV file's samples with PyAV, as (frames, channels), and its rate."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        parts = []
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            parts.append(array.T if frame.format.is_planar else array.reshape(-1, stream.channels))
        return np.concatenate(parts), stream.rate


def rms(samples: np.ndarray, start_s: float, end_s: float) -> float:
    part = samples[max(0, round(start_s * RATE)) : max(0, round(end_s * RATE))]
    part = part.astype(np.float64)
    return float(np.sqrt(np.mean(part**2))) if part.size else 0.0


def onset_s(samples: np.ndarray, level: int = 1000) -> float:
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > level)[0]
    assert loud.size, "no sound on this channel"
    return loud[0] / RATE


async def stream_caller(convo: Conversation, pcm: bytes, stop: asyncio.Event) -> None:
    """A real-time client: `pcm` in 20 ms frames at playback pace, then silence until `stop`."""
    speech, hush = frames(pcm, 16_000, 1, 20), bytes(640)
    start, sent = time.monotonic(), 0
    while not stop.is_set():
        convo.send(converse_pb2.ConverseRequest(audio=speech[sent] if sent < len(speech) else hush))
        sent += 1
        await asyncio.sleep(max(0.0, start + sent * 0.02 - time.monotonic()))  # pacing


async def test_a_spoken_conversation_is_recorded_caller_left_agent_right(
    start_server, fake_openai, tmp_path
):
    fake_openai.transcripts.append("I want to order a pizza")
    fake_openai.tts_ms_per_char = 40.0  # about 1.4 s of reply
    agent = await start_server(data_dir=tmp_path)
    convo = Conversation(agent.stub, config(record=True))
    sid = (await convo.until("session_started")).session_started.session_id
    t0 = time.monotonic()
    pcm = speech_pcm("I want to order a large pepperoni pizza")
    stop = asyncio.Event()
    sender = asyncio.create_task(stream_caller(convo, pcm, stop))
    await convo.until("agent_audio")
    first_audio_s = time.monotonic() - t0
    done = (await convo.until("turn_completed")).turn_completed
    stop.set()
    await sender
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()).name == "OK"
    stream_s = time.monotonic() - t0
    speech = convo.of("speech_stopped")[0]

    async with httpx.AsyncClient(base_url=agent.http_url, timeout=TIMEOUT) as client:
        listed = (await client.get(f"/sessions/{sid}/recordings")).json()
        assert len(listed["recordings"]) == 1
        entry = listed["recordings"][0]
        assert entry["complete"] and entry["channels"] == 2 and entry["sample_rate"] == RATE
        # As long as the stream, or as the reply's playback if that ends later (agent audio
        # is released up to OUTPUT_LEAD_MS ahead, so the turn completes before it has played).
        played_s = first_audio_s + done.agent_audio_ms / 1000
        assert abs(entry["duration_s"] - max(stream_s, played_s)) < 0.2, (entry, stream_s)
        reply = await client.get(f"/sessions/{sid}/recording")  # the latest
        assert reply.status_code == 200 and reply.headers["content-type"] == "audio/wav"
        assert len(reply.content) == entry["bytes"]
        named = await client.get(entry["download_url"])
        assert named.content == reply.content
    path = tmp_path / "recordings" / "default" / sid / entry["name"]
    assert path.read_bytes() == reply.content

    samples, rate = decode(reply.content)
    assert rate == RATE and samples.shape[1] == 2
    assert abs(len(samples) / RATE - entry["duration_s"]) < 0.01
    caller, agent_side = samples[:, 0], samples[:, 1]
    # The caller's channel: the speech after its 300 ms of lead silence, to where the VAD
    # heard it end (caller time is its sample count), and the silence sent around it.
    spoke = (0.3, speech.end_offset_ms / 1000)
    assert rms(caller, *spoke) > 1000
    assert rms(caller, 0, 0.25) < 50
    assert rms(caller, spoke[1] + 0.3, len(caller) / RATE) < 50  # silence was sent after
    # The agent's channel: the reply, from when it was released, as long as it was.
    agent_at = onset_s(agent_side)
    assert agent_at > spoke[1]
    assert abs(agent_at - first_audio_s) < 0.25, (agent_at, first_audio_s)
    assert rms(agent_side, 0, agent_at - 0.01) == 0
    assert rms(agent_side, agent_at, agent_at + done.agent_audio_ms / 1000) > 3000
    heard_s = (np.nonzero(np.abs(agent_side) > 1000)[0][-1] / RATE) - agent_at
    assert abs(heard_s - done.agent_audio_ms / 1000) < 0.05


async def test_recordings_are_the_tenants_own(start_server, database_url, tmp_path):
    acme = await make_key(database_url, "acme")
    globex = await make_key(database_url, "globex")
    agent = await start_server(data_dir=tmp_path, record_sessions=True)  # every stream
    mine = await text_session(agent, acme, "my secret order")  # agent audio only
    async with http(agent, acme) as client:
        listed = (await client.get(f"/sessions/{mine}/recordings")).json()["recordings"]
        assert len(listed) == 1 and listed[0]["duration_s"] > 0
        reply = await client.get(f"/sessions/{mine}/recording")
        assert reply.status_code == 200
        samples, _ = decode(reply.content)
        assert rms(samples[:, 0], 0, 60) == 0 and rms(samples[:, 1], 0, 60) > 100
        bad = await client.get(f"/sessions/{mine}/recording", params={"name": "../../x.wav"})
        assert bad.status_code == 422
        none = await client.get(
            f"/sessions/{mine}/recording", params={"name": "20000101T000000.000000Z.wav"}
        )
        assert none.status_code == 404
    async with http(agent, globex) as client:
        for path in (f"/sessions/{mine}/recordings", f"/sessions/{mine}/recording",
                     f"/sessions/{mine}/recording?name={listed[0]['name']}"):  # fmt: skip
            reply = await client.get(path)
            assert reply.status_code == 404, path
            assert "secret" not in reply.text
    async with http(agent) as client:
        assert (await client.get(f"/sessions/{mine}/recording")).status_code == 401
    assert (tmp_path / "recordings" / "acme" / mine / listed[0]["name"]).is_file()


async def text_stream(agent, **fields) -> str:
    """A gRPC stream of one typed turn (the agent speaks its reply); its session id."""
    convo = Conversation(agent.stub, config(None, **fields))
    convo.send(text("Hello there"), control(END_OF_INPUT))
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()).name == "OK"
    return convo.of("session_started")[0].session_id


async def test_streams_are_recorded_only_when_asked(fake_openai, start_server, tmp_path):
    server = await start_server(data_dir=tmp_path)
    not_asked = await text_stream(server)
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        assert (await client.get(f"/sessions/{not_asked}/recordings")).json()["recordings"] == []
        assert (await client.get(f"/sessions/{not_asked}/recording")).status_code == 404
    # A WebSocket asks with ?record=true; a whole uploaded utterance goes on the caller side.
    fake_openai.transcripts.append("A pepperoni pizza please")
    async with connect(ws_url(server, "rec-ws", "?record=true")) as socket:
        ws = Ws(socket)
        data = base64.b64encode(speech_file("wav", "A pepperoni pizza please")).decode()
        await ws.send(type="audio_chunk", audio_data=data, format="wav")
        await ws.next("audio_response")
    sid = str(uuid.uuid5(CLIENT_ID_NAMESPACE, "rec-ws"))
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        listed = (await client.get("/sessions/rec-ws/recordings")).json()
        assert listed["session_id"] == sid and len(listed["recordings"]) == 1
        samples, _ = decode((await client.get("/sessions/rec-ws/recording")).content)
    caller_at, agent_at = onset_s(samples[:, 0]), onset_s(samples[:, 1])
    assert caller_at < agent_at  # the utterance, then the reply to it
    assert rms(samples[:, 0], caller_at, caller_at + 1.0) > 1000


async def test_old_recordings_are_deleted_by_the_cores_retention_task(start_server, tmp_path):
    agent = await start_server(data_dir=tmp_path, recording_retention_days=1)
    names = [task.get_name() for task in agent.server.core._tasks]
    assert "recording-retention" in names
    root = tmp_path / "recordings" / "default"
    old_dir, new_dir = root / str(uuid.uuid4()), root / str(uuid.uuid4())
    for folder in (old_dir, new_dir):
        folder.mkdir(parents=True)
        with wave.open(str(folder / "20240101T000000.000000Z.wav"), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            wav.writeframes(bytes(4 * RATE))
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_dir / "20240101T000000.000000Z.wav", (two_days_ago, two_days_ago))
    await agent.server.core.recordings.sweep()  # what the task does, now
    assert not old_dir.exists()  # the file, then its empty folder
    assert (new_dir / "20240101T000000.000000Z.wav").is_file()


async def test_finished_recordings_reach_the_hook_and_the_webhook(start_server, tmp_path):
    received: asyncio.Queue[dict] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/recordings", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    HOOK_CALLS.clear()
    try:
        agent = await start_server(
            data_dir=tmp_path,
            recording_hook="tests.test_recordings:remember_recording",
            recording_webhook_url=f"http://127.0.0.1:{port}/recordings",
        )
        sid = await text_stream(agent, record=True)
        posted = await asyncio.wait_for(received.get(), TIMEOUT)
    finally:
        await runner.cleanup()
    assert posted["event"] == "recording.finished"
    assert posted["session_id"] == sid and posted["tenant_id"] == "default"
    assert posted["channels"] == ["caller", "agent"] and posted["sample_rate"] == RATE
    assert posted["duration_s"] > 0 and posted["dropped_ms"] == 0
    path = tmp_path / "recordings" / "default" / sid / posted["name"]
    assert posted["path"] == str(path) and posted["bytes"] == path.stat().st_size
    assert HOOK_CALLS == [(str(path), posted)]  # called before the POST, in the same worker
    assert json.dumps(posted)  # plain JSON


def test_a_hook_that_cannot_be_loaded_stops_start_up(tmp_path):
    with pytest.raises(RuntimeError, match="RECORDING_HOOK 'tests.nowhere:nothing'"):
        Recordings(Settings(_env_file=None, data_dir=tmp_path,
                            recording_hook="tests.nowhere:nothing"))  # fmt: skip
    with pytest.raises(ValidationError):
        Settings(_env_file=None, recording_hook="not a hook")
    with pytest.raises(ValidationError):
        Settings(_env_file=None, recording_webhook_url="ftp://example.org/")
