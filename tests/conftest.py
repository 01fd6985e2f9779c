"""Shared fixtures: a fake OpenAI server and real voice servers on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from hypothesis import HealthCheck, settings
from voiceagent.v1 import sessions_pb2_grpc
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from server.app import VoiceServer
from server.persistence.database import EmbeddedPostgres
from testing.fakes import FakeOpenAI
from testing.settings import test_settings

# Every `python -m server` a test starts is one process (WORKERS defaults to the number of
# cores); tests of several workers ask for them (tests/test_workers.py).
os.environ["WORKERS"] = "1"


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """An admin URL: `DATABASE_URL` when set (e.g. the system PostgreSQL), else an embedded
    Postgres started once for the whole test run."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = embedded.start()
    try:
        yield url
    finally:
        embedded.stop()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield with_database(postgres_url, name)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


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
    sessions: sessions_pb2_grpc.SessionServiceStub

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def http_url(self) -> str:
        """Base URL of the REST API; the WebSocket is the same with ws://."""
        return f"http://127.0.0.1:{self.server.http_port}"


StartServer = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_server(fake_openai: FakeOpenAI, database_url: str) -> AsyncIterator[StartServer]:
    running: list[Running] = []

    async def start(fake: FakeOpenAI | None = fake_openai, **overrides) -> Running:
        overrides.setdefault("database_url", database_url)
        server = VoiceServer(test_settings(fake, **overrides))
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        run = Running(
            server,
            channel,
            pb_grpc.VoiceAgentServiceStub(channel),
            sessions_pb2_grpc.SessionServiceStub(channel),
        )
        running.append(run)
        return run

    yield start
    for run in running:
        await run.channel.close()
        if run.server.db is not None and not run.server.db.pool.is_closing():
            await run.server.stop()


@pytest.fixture
async def agent(start_server: StartServer) -> Running:
    return await start_server()


# -- the fault/fuzz suite (tests/test_fuzz_*.py, test_faults_midturn.py, test_churn.py) -----------
# Hypothesis profiles: "fuzz" (the default) keeps the normal run short and repeatable (a fixed
# seed, few examples: each one drives the real server); "soak" (`make soak`) explores, with
# many more random examples. Pick one with HYPOTHESIS_PROFILE.
settings.register_profile(
    "fuzz",
    max_examples=25,
    deadline=None,  # examples do real network round trips: timing varies with the machine
    derandomize=True,
    database=None,  # found defects are kept as @example()s and regression tests instead
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "soak", parent=settings.get_profile("fuzz"), max_examples=1000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fuzz"))


def pytest_terminal_summary(terminalreporter) -> None:
    """The fuzz suite's figures (inputs tried, faults survived, cycles run), for the docs."""
    from tests.fuzz_support import STATS

    if STATS:
        terminalreporter.section("fault/fuzz figures")
        for name, count in sorted(STATS.items()):
            terminalreporter.write_line(f"{count:>8}  {name}")
