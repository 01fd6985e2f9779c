"""Server replicas for tests and benchmarks: `python -m server` processes on loopback that
share one database, as several replicas (or workers) of one deployment would.

Each replica logs to a list (stderr is drained, so a chatty server never blocks on a full
pipe); `kill` is SIGKILL (a crash), `stop` is SIGTERM (a graceful shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from voiceagent.v1 import sessions_pb2_grpc
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0


@dataclass
class Replica:
    name: str
    proc: asyncio.subprocess.Process
    grpc_port: int
    http_port: int
    log: list[str] = field(default_factory=list)
    channel: grpc.aio.Channel | None = None
    _drain: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"

    def _channel(self) -> grpc.aio.Channel:
        if self.channel is None:
            self.channel = grpc.aio.insecure_channel(self.address)
        return self.channel

    @property
    def stub(self) -> pb_grpc.VoiceAgentServiceStub:
        return pb_grpc.VoiceAgentServiceStub(self._channel())

    @property
    def sessions(self) -> sessions_pb2_grpc.SessionServiceStub:
        return sessions_pb2_grpc.SessionServiceStub(self._channel())

    def kill(self) -> None:
        """SIGKILL: the process dies mid-whatever, as in a crash or an OOM kill."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self, timeout: float = 30.0) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.kill()
                await self.proc.wait()
        if self.channel is not None:
            await self.channel.close()
        if self._drain is not None:
            await asyncio.gather(self._drain, return_exceptions=True)


async def _read_log(proc: asyncio.subprocess.Process, log: list[str]) -> None:
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        log.append(line.decode(errors="replace"))


async def start_replica(name: str, env: dict[str, str]) -> Replica:
    """`python -m server` with `env` over this environment, on free loopback ports; returns
    once it serves both gRPC and HTTP."""
    full = dict(
        os.environ,
        GRPC_HOST="127.0.0.1",
        GRPC_PORT="0",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        CLUSTER_OWNER_ID=name,
        **env,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=full, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    log: list[str] = []
    http_port = 0
    try:
        while True:  # the server logs its ports once it serves
            line = (await asyncio.wait_for(proc.stderr.readline(), START_TIMEOUT)).decode()
            if not line:
                raise RuntimeError(f"replica {name} exited before serving:\n" + "".join(log))
            log.append(line)
            if match := re.search(r"HTTP \(.*\) serving on port (\d+)", line):
                http_port = int(match.group(1))
            if match := re.search(r"gRPC serving .* on port (\d+)", line):
                break
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    replica = Replica(name, proc, int(match.group(1)), http_port, log)
    replica._drain = asyncio.create_task(_read_log(proc, log), name=f"log:{name}")
    return replica
