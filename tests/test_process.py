"""The server as `make run` starts it (`python -m server`), driven by grpcurl and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import wave
from pathlib import Path

import grpc
import pytest

from testing.converse_client import Conversation, config
from testing.speech import speech_pcm, write_wav

ROOT = Path(__file__).resolve().parent.parent
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
TIMEOUT = 60


async def run(
    *cmd: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), TIMEOUT)
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def server_env(request, tmp_path) -> dict[str, str]:
    """A fresh test database, or with param "embedded" the default: no DATABASE_URL, an
    embedded Postgres under DATA_DIR."""
    if getattr(request, "param", None) == "embedded":
        return {"DATABASE_URL": "", "DATA_DIR": str(tmp_path / "var")}
    return {"DATABASE_URL": request.getfixturevalue("database_url")}


@pytest.fixture
async def server_process(fake_openai, server_env):
    env = dict(
        os.environ,
        **server_env,
        GRPC_HOST="127.0.0.1",
        GRPC_PORT="0",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT="0",
        OPENAI_API_KEY="test-key",
        OPENAI_BASE_URL=fake_openai.base_url,
        VAD_STOP_MS="400",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    log: list[str] = []
    try:
        while True:  # the server logs its port once it serves
            line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT)).decode()
            assert line, "server exited before serving:\n" + "".join(log)
            log.append(line)
            if match := re.search(r"gRPC serving .* on port (\d+)", line):
                break
        yield proc, f"127.0.0.1:{match.group(1)}", log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_grpcurl_lists_services_checks_health_and_has_a_text_conversation(server_process):
    _, address, _ = server_process
    code, out, err = await run(GRPCURL, "-plaintext", address, "list")
    assert code == 0, err
    assert {"voiceagent.v1.VoiceAgentService", "grpc.health.v1.Health"} <= set(out.split())

    code, out, err = await run(GRPCURL, "-plaintext", address, "grpc.health.v1.Health/Check")
    assert code == 0 and json.loads(out) == {"status": "SERVING"}, err

    requests = "\n".join(
        json.dumps(m)
        for m in (
            {"config": {"instructions": "Be brief."}},
            {"text": {"text": "I want to order a pizza"}},
            {"control": {"action": "CONTROL_ACTION_END_OF_INPUT"}},
        )
    )
    code, out, err = await run(
        GRPCURL, "-plaintext", "-d", "@", address, "voiceagent.v1.VoiceAgentService/Converse",
        stdin=requests,
    )  # fmt: skip
    assert code == 0, err
    events = [json.loads(chunk) for chunk in re.split(r"(?<=})\n(?={)", out.strip())]
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "session_started" and "agent_audio" in kinds
    done = next(e["turn_completed"] for e in events if "turn_completed" in e)
    assert done["agent_text"] == "You said: I want to order a pizza."
    assert done["turn_index"] == 1  # int32 fields stay numbers in JSON


async def test_cli_talks_from_a_wav_file(server_process, fake_openai, tmp_path):
    _, address, _ = server_process
    fake_openai.transcripts.append("I want to order a pizza")
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_pcm("I want to order a pizza", 22_050, 1, tail_silence_ms=600), 22_050, 1)
    out_wav = tmp_path / "reply.wav"
    code, out, err = await run(
        sys.executable, "-m", "clients.talk", str(wav), "--server", address,
        "--out", str(out_wav), "--rate", "16000",
    )  # fmt: skip
    assert code == 0, err
    assert "you: I want to order a pizza" in out
    assert "agent: You said: I want to order a pizza." in out
    with wave.open(str(out_wav)) as w:
        assert w.getframerate() == 16_000 and w.getnframes() > 0


@pytest.mark.parametrize("server_env", ["embedded"], indirect=True)
async def test_sigterm_ends_live_streams_with_unavailable_and_exits_cleanly(
    server_process, tmp_path
):
    proc, address, log = server_process
    async with grpc.aio.insecure_channel(address) as channel:
        from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

        convo = Conversation(pb_grpc.VoiceAgentServiceStub(channel), config())
        await convo.until("session_started")
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await convo.rest()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    log.append((await proc.stderr.read()).decode())
    assert "shutting down" in "".join(log)
    # The embedded Postgres was stopped with the server: no postmaster left running.
    assert not list((tmp_path / "var" / "postgres").glob("postmaster.pid"))
