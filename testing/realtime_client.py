"""A Realtime API client for tests: the official `openai` SDK's connection, with every server
event parsed strictly into the SDK's typed GA models (a missing or mistyped field fails)."""

from __future__ import annotations

import asyncio
import base64
import json
import typing

from openai import AsyncOpenAI
from openai.types.realtime import RealtimeServerEvent

# Every GA server event model of the SDK, by its `type`.
MODELS = {
    typing.get_args(m.model_fields["type"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(RealtimeServerEvent)[0])
}
TIMEOUT_S = 60.0


def client(http_url: str, api_key: str = "sk-unused") -> AsyncOpenAI:
    """An SDK client for the server at `http_url`; connect() goes to ws://.../v1/realtime."""
    return AsyncOpenAI(api_key=api_key, base_url=f"{http_url}/v1", max_retries=0)


class Realtime:
    """One connection driven by a test: send events, await typed server events by type."""

    def __init__(self, connection) -> None:  # noqa: ANN001 (the SDK's AsyncRealtimeConnection)
        self.connection = connection
        self.seen: list = []

    async def send(self, **event) -> None:
        await self.connection.send(event)

    async def next(self, kind: str):  # noqa: ANN201 (a typed SDK event)
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                raw = await self.connection.recv_bytes()
                data = json.loads(raw)
                event = MODELS[data["type"]].model_validate(data)  # strict: fails on a bad field
                self.seen.append(event)
                if event.type == kind:
                    return event

    def of(self, kind: str) -> list:
        return [e for e in self.seen if e.type == kind]

    def types(self) -> list[str]:
        return [e.type for e in self.seen]

    async def transcribe_input(self) -> None:
        """session.update turning on input transcription (whisper-1), and its session.updated."""
        await self.send(
            type="session.update",
            session={
                "type": "realtime",
                "audio": {"input": {"transcription": {"model": "whisper-1"}}},
            },
        )
        await self.next("session.updated")

    async def append_audio(self, data: bytes, chunk_bytes: int = 4800) -> None:
        for i in range(0, len(data), chunk_bytes):
            chunk = base64.b64encode(data[i : i + chunk_bytes]).decode()
            await self.send(type="input_audio_buffer.append", audio=chunk)

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(e.delta) for e in self.of("response.output_audio.delta"))
