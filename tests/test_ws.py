"""The WebSocket API on a real uvicorn, with the `websockets` client: the original browser
protocol, recorded utterances, a continuous PCM stream cut by the VAD, status/disconnect,
and bad messages that leave the socket open."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid

import av
import httpx
import pytest
from voiceagent.v1 import sessions_pb2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.sessions.ids import CLIENT_ID_NAMESPACE
from testing.speech import speech_pcm
from tests.test_http_voice import speech_file

TIMEOUT = 30.0


class Ws:
    """One socket driven by a test: send JSON, await messages by type."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.seen: list[dict] = []

    async def send(self, **message) -> None:
        await self.socket.send(json.dumps(message))

    async def next(self, kind: str) -> dict:
        async with asyncio.timeout(TIMEOUT):
            while True:
                message = json.loads(await self.socket.recv())
                self.seen.append(message)
                if message["type"] == kind:
                    return message

    async def closed(self) -> tuple[int, str]:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    self.seen.append(json.loads(await self.socket.recv()))
        return info.value.rcvd.code, info.value.rcvd.reason


def ws_url(agent, session_id: str, query: str = "") -> str:
    return agent.http_url.replace("http://", "ws://") + f"/ws/voice-agent/{session_id}{query}"


def mp3_seconds(b64: str) -> float:
    with av.open(io.BytesIO(base64.b64decode(b64))) as f:
        assert f.format.name == "mp3"
        stream = f.streams.audio[0]
        return sum(frame.samples for frame in f.decode(stream)) / stream.rate


async def test_browser_snippet_text_turn_with_a_client_picked_id(agent, fake_openai):
    async with connect(ws_url(agent, "session123")) as socket:
        ws = Ws(socket)
        started = await ws.next("session_started")
        assert started["session_id"] == str(uuid.uuid5(CLIENT_ID_NAMESPACE, "session123"))
        assert started["client_session_id"] == "session123" and not started["resumed"]
        await ws.send(type="text_input", text="I want to order a pizza")
        assert (await ws.next("transcription"))["text"] == "I want to order a pizza"
        reply = await ws.next("conversation_response")
        assert reply["text"] == "You said: I want to order a pizza."
        audio = await ws.next("audio_response")
        assert audio["format"] == "mp3"
        assert abs(mp3_seconds(audio["audio_base64"]) * 1000 - audio["duration_ms"]) < 60
        kinds = [m["type"] for m in ws.seen]
        assert "agent_text_delta" in kinds and "state" in kinds  # streaming extras
    async with connect(ws_url(agent, "session123")) as socket:  # the same session again
        ws = Ws(socket)
        assert (await ws.next("session_started"))["resumed"]
        await ws.send(type="text_input", text="Make it large")
        assert (await ws.next("conversation_response"))["turn_index"] == 2
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        stored = (await http.get("/sessions/session123")).json()
    assert stored["session_id"] == started["session_id"] and stored["turn_count"] == 2


@pytest.mark.parametrize("fmt", ["wav", "webm"])
async def test_recorded_utterance_is_one_turn(agent, fake_openai, fmt):
    fake_openai.transcripts.append("A pepperoni pizza please")
    async with connect(ws_url(agent, str(uuid.uuid4()), "?customer_id=carol")) as socket:
        ws = Ws(socket)
        data = base64.b64encode(speech_file(fmt, "A pepperoni pizza please")).decode()
        await ws.send(type="audio_chunk", audio_data=data, format=fmt)
        heard = await ws.next("transcription")
        assert heard["text"] == "A pepperoni pizza please" and heard["end_offset_ms"] > 1000
        assert (await ws.next("conversation_response"))["text"].startswith("You said: A pep")
        await ws.next("audio_response")
    sent = fake_openai.requests[0].audio
    assert (sent.sample_rate, sent.channels) == (16_000, 1)
    assert abs(sent.duration_s * 1000 - heard["end_offset_ms"]) < 5


async def test_continuous_pcm_stream_is_cut_into_turns_by_the_vad(agent, fake_openai):
    fake_openai.transcripts.extend(["First turn", "Second turn"])
    async with connect(ws_url(agent, "stream-client")) as socket:
        ws = Ws(socket)
        for index, words in enumerate(("first turn here", "and the second one"), 1):
            pcm = speech_pcm(words, sample_rate=24_000, tail_silence_ms=1000)
            for i in range(0, len(pcm), 4800):  # 100 ms chunks at 24 kHz
                chunk = base64.b64encode(pcm[i : i + 4800]).decode()
                await ws.send(
                    type="audio_chunk", audio_data=chunk, format="pcm16", sample_rate=24_000
                )
            await ws.next("speech_started")
            stopped = await ws.next("speech_stopped")
            heard = await ws.next("transcription")
            assert heard["turn_index"] == index and heard["start_offset_ms"] >= 0
            assert heard["end_offset_ms"] == stopped["end_offset_ms"]
            await ws.next("conversation_response")
            await ws.next("audio_response")
    assert [r.audio.sample_rate for r in fake_openai.requests if r.audio] == [16_000, 16_000]


async def test_stream_audio_sends_pcm_deltas_as_well(agent, fake_openai):
    async with connect(ws_url(agent, "streamer", "?stream_audio=true")) as socket:
        ws = Ws(socket)
        await ws.send(type="text_input", text="Hello")
        await ws.next("audio_response")
    deltas = [m for m in ws.seen if m["type"] == "audio_delta"]
    assert deltas and deltas[0]["format"] == "pcm16" and deltas[0]["sample_rate"] == 24_000
    assert sum(len(base64.b64decode(d["audio_base64"])) for d in deltas) == 2 * round(
        max(100.0, len("You said: Hello.") * fake_openai.tts_ms_per_char) * 24
    )


async def test_status_and_disconnect_close_a_live_socket(agent):
    async with httpx.AsyncClient(base_url=agent.http_url) as http:
        async with connect(ws_url(agent, "session-a")) as socket:
            ws = Ws(socket)
            await ws.next("session_started")
            await ws.send(type="text_input", text="Hi")
            await ws.next("audio_response")
            status = (await http.get("/ws/status")).json()
            assert status["active_connections"] == 1 and status["session_ids"] == ["session-a"]
            conn = status["connections"][0]
            assert conn["turns"] == 1 and conn["messages_received"] == 1
            assert conn["messages_sent"] >= 4 and conn["client"].startswith("127.0.0.1:")
            reply = await http.post("/ws/disconnect/session-a")
            assert reply.status_code == 200 and reply.json()["disconnected"]
            assert await ws.closed() == (1000, "disconnected by request")
        assert (await http.get("/ws/status")).json()["active_connections"] == 0
        again = await http.post("/ws/disconnect/session-a")
        assert again.status_code == 404 and "no live WebSocket" in again.json()["detail"]
        stored = (await http.get("/sessions/session-a")).json()
        assert stored["state"] == "disconnected" and not stored["live"]  # resumable


async def test_bad_messages_get_errors_and_the_socket_stays_open(agent):
    async with connect(ws_url(agent, "clumsy")) as socket:
        ws = Ws(socket)
        await ws.next("session_started")
        bad = [
            ("{not json", "invalid JSON"),
            (json.dumps([1, 2]), "JSON object"),
            (json.dumps({"type": "dance"}), "unknown message type 'dance'"),
            (json.dumps({"type": "text_input"}), 'needs "text"'),
            (json.dumps({"type": "text_input", "text": "  "}), "text is empty"),
            (json.dumps({"type": "audio_chunk", "audio_data": "%%%"}), "not valid base64"),
            (json.dumps({"type": "audio_chunk", "audio_data": "AAAA", "format": "aiff"}),
             "unsupported audio format 'aiff'"),
            (json.dumps({"type": "audio_chunk", "audio_data": "aGVsbG8gd29ybGQ=", "format": "wav"}),
             "could not be decoded"),
            (json.dumps({"type": "audio_chunk", "audio_data": "AAAA", "format": "pcm16"}),
             "whole number"),
            (b"\x00\x01binary", "binary frames are not accepted"),
        ]  # fmt: skip
        for frame, message in bad:
            await socket.send(frame)
            error = await ws.next("error")
            assert message in error["message"], (frame, error)
        await ws.send(type="text_input", text="Still here")
        assert (await ws.next("conversation_response"))["text"] == "You said: Still here."


async def test_second_socket_on_a_live_session_is_refused(agent):
    async with connect(ws_url(agent, "shared")) as first:
        await Ws(first).next("session_started")
        async with connect(ws_url(agent, "shared")) as second:
            ws = Ws(second)
            assert "busy" in (await ws.next("error"))["message"]
            code, _ = await ws.closed()
            assert code == 1008


async def test_end_session_rpc_and_shutdown_close_sockets(agent):
    async with connect(ws_url(agent, "to-end")) as socket:
        ws = Ws(socket)
        sid = (await ws.next("session_started"))["session_id"]
        await agent.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id=sid))
        assert await ws.closed() == (1000, "session ended")
    async with connect(ws_url(agent, "to-shutdown")) as socket:
        ws = Ws(socket)
        await ws.next("session_started")
        await ws.send(type="text_input", text="Goodbye")
        await ws.next("transcription")
        stopping = asyncio.create_task(agent.server.stop())
        code, reason = await ws.closed()
        await stopping
    assert code == 1012 and "reconnect" in reason
    assert "audio_response" in [m["type"] for m in ws.seen]  # the reply in flight finished
