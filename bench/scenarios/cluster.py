"""9. Cluster control latency: EndSession on replica B ends a stream that lives on replica A.

Two `python -m server` replicas share one embedded Postgres (a temporary DATA_DIR of its own,
stopped and removed afterwards, even on error), as replicas of one deployment share their
DATABASE_URL. Each round opens a text-only Converse stream on A, waits for session_started,
then calls EndSession on B and times from just before the call until the stream on A has
ended (its end of stream arrives at the client): lease lookup, NOTIFY to the owner, the
owner's hang-up, the stream's end. The floor, measured in the same run with rounds
interleaved, is EndSession sent to A itself (no control plane hop).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from voiceagent.v1 import sessions_pb2

from bench.context import Context
from bench.registry import Figure, Recorder, Spec, scenario
from bench.stack import scratch_postgres_dir
from bench.stats import percentile, ratio
from server.persistence.database import EmbeddedPostgres
from testing.cluster import Replica, start_replica
from testing.converse_client import Conversation, config
from testing.fakes import FakeOpenAI

SPECS = {
    "remote_end": Spec("EndSession on B -> stream on A ended", "ms", latency=True),
    "local_end": Spec("floor: EndSession on A -> stream on A ended", "ms", latency=True),
    "remote_over_local": Spec("p50 ratio, remote / local", "x", note="info, no goal"),
}


@scenario("cluster", "Cluster control latency (two replicas, one Postgres)")
def run(ctx: Context) -> list[Figure]:
    with scratch_postgres_dir("cluster") as data_dir:
        return asyncio.run(_measure(ctx, data_dir))


async def _measure(ctx: Context, data_dir: Path) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("cluster", SPECS)
    ctx.log(f"cluster: embedded Postgres in {data_dir}, two replicas")
    postgres = EmbeddedPostgres(data_dir)
    url = await asyncio.to_thread(postgres.start)
    async with FakeOpenAI() as fake:
        env = {
            "DATABASE_URL": url,
            "OPENAI_API_KEY": "bench-key",
            "OPENAI_BASE_URL": fake.base_url,
        }
        a = await start_replica("bench-a", env)
        b = await start_replica("bench-b", env)
        try:
            for rep in range(cfg.repeat):
                ctx.log(f"cluster: run {rep + 1}/{cfg.repeat}, {cfg.cluster_rounds} rounds")
                remote, local = [], []
                for i in range(cfg.cluster_rounds + 1):  # round 0: warm-up, not counted
                    r = await _end_ms(a, b)
                    lo = await _end_ms(a, a)
                    if i:
                        remote.append(r)
                        local.append(lo)
                rec.add("remote_end", remote)
                rec.add("local_end", local)
                rec.add("remote_over_local", ratio(percentile(remote, 50), percentile(local, 50)))
        finally:
            await asyncio.gather(a.stop(), b.stop())
    await asyncio.to_thread(postgres.stop)
    return rec.figures()


async def _end_ms(owner: Replica, sender: Replica) -> float:
    """A stream on `owner`, ended by EndSession sent to `sender`: ms until the stream ends."""
    convo = Conversation(owner.stub, config(input_rate=None))
    sid = (await convo.until("session_started")).session_started.session_id
    t0 = time.perf_counter()
    ending = asyncio.ensure_future(
        sender.sessions.EndSession(sessions_pb2.EndSessionRequest(session_id=sid))
    )
    await convo.rest()
    elapsed = (time.perf_counter() - t0) * 1000.0
    convo.close_input()
    await ending
    return elapsed
