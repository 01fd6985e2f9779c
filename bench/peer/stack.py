"""The peer under test: Pipecat's bot (bench/peer/pipecat_bot.py) in the bench-only venv,
calling the same fake OpenAI server as ours, started and stopped like `bench.stack`.

The venv is made by `make bench-peer` (bench/.venv-pipecat, ignored by git, never a project
dependency); without it the peer runs fail with a message saying so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bench.context import ROOT, Context
from bench.procs import child, free_port
from bench.stack import FakeSettings, Stack

PEER_PYTHON = ROOT / "bench" / ".venv-pipecat" / "bin" / "python"


class PeerMissing(RuntimeError):
    pass


@contextlib.contextmanager
def peer_stack(ctx: Context, fake: FakeSettings) -> Iterator[Stack]:
    if not PEER_PYTHON.exists():
        raise PeerMissing(f"{PEER_PYTHON} is missing: `make bench-peer` creates it")
    cfg = ctx.config
    with child("fake-openai", "testing.fakes", fake.args()) as fake_proc:
        fake_port = int(fake_proc.read_prefixed("PORT", timeout=30.0))
        port = free_port()
        args = [
            f"--port={port}", f"--openai-base-url=http://127.0.0.1:{fake_port}/v1",
            f"--start-ms={cfg.vad_start_ms}", f"--stop-ms={cfg.vad_stop_ms}",
        ]  # fmt: skip
        env = {"PIPECAT_ALLOWED_ORIGINS": ""}
        with child("pipecat", "bench.peer.pipecat_bot", args, env, python=str(PEER_PYTHON)) as bot:
            bot.read_prefixed("PORT", timeout=120.0)
            no_db = ctx.data_dir / "peer-has-no-database"
            yield Stack(bot, fake_proc, port, no_db, servers=[bot], ports=[port])
