"""Shared fixtures: a fake OpenAI server and real voice servers on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from server.app import VoiceServer
from server.config import Settings
from tests.fakes import FakeOpenAI


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        fake.tts_ms_per_char = 5.0  # short agent audio keeps paced tests quick
        yield fake


@dataclass
class Running:
    server: VoiceServer
    channel: grpc.aio.Channel
    stub: pb_grpc.VoiceAgentServiceStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


StartServer = Callable[..., Awaitable[Running]]


def test_settings(fake: FakeOpenAI | None, **overrides) -> Settings:
    values = dict(
        grpc_host="127.0.0.1",
        grpc_port=0,
        openai_api_key="test-key" if fake else None,
        openai_base_url=fake.base_url if fake else None,
        openai_max_retries=1,
        openai_timeout_s=5.0,
        vad_stop_ms=400,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
async def start_server(fake_openai: FakeOpenAI) -> AsyncIterator[StartServer]:
    running: list[Running] = []

    async def start(fake: FakeOpenAI | None = fake_openai, **overrides) -> Running:
        server = VoiceServer(test_settings(fake, **overrides))
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        run = Running(server, channel, pb_grpc.VoiceAgentServiceStub(channel))
        running.append(run)
        return run

    yield start
    for run in running:
        await run.channel.close()
        await run.server.stop()


@pytest.fixture
async def agent(start_server: StartServer) -> Running:
    return await start_server()
