"""`python -m bench` (`make bench`): run the scenarios, print the table, write the JSON.

`--smoke` runs everything tiny and once, in well under a minute: it proves every figure is
produced, not how fast anything is. Goal misses do not fail the run; a scenario that crashes
does (exit status 1), after the others have run.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

from bench import scenarios  # noqa: F401 - registers the scenarios
from bench.context import BenchConfig, Context
from bench.live import summaries
from bench.registry import SCENARIOS, Figure
from bench.report import environment, table, write_json
from bench.stack import stop_postgres


def _ints(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 50,100,200")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny N, few frames, 1 repeat")
    p.add_argument("--repeat", type=int, help="runs per figure (median over them); default 3")
    p.add_argument("--sessions", type=_ints, help="live-session counts, default 50,100,200,400")
    p.add_argument("--v2v-sessions", type=_ints, help="session counts for v2v, default 1,100")
    p.add_argument("--barge-streams", type=int, help="concurrent callers in the barge-in run")
    p.add_argument("--cycle-s", type=float, help="seconds between a caller's utterances")
    p.add_argument(
        "--only", type=lambda s: s.split(","), help=f"scenarios to run: {','.join(SCENARIOS)}"
    )
    p.add_argument(
        "--peer", action="store_true", help="capacity: also Pipecat (needs `make bench-peer`)"
    )
    p.add_argument("--capacity-sessions", type=_ints, help="capacity: N to climb for this server")
    p.add_argument("--capacity-peer-sessions", type=_ints, help="capacity: N to climb for Pipecat")
    p.add_argument(
        "--capacity-systems", type=lambda s: tuple(s.split(",")), help="ours1,ours2,pipecat"
    )
    p.add_argument("--results-dir", type=Path, help="where the JSON goes (bench/results/)")
    p.add_argument(
        "--profile-server", type=Path, metavar="DIR", help="run servers under cProfile into DIR"
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> BenchConfig:
    cfg = BenchConfig.for_smoke() if args.smoke else BenchConfig()
    overrides = {
        "repeat": args.repeat,
        "sessions": args.sessions,
        "v2v_sessions": args.v2v_sessions,
        "barge_streams": args.barge_streams,
        "cycle_s": args.cycle_s,
        "results_dir": args.results_dir,
        "peer": args.peer or None,
        "capacity_sessions": args.capacity_sessions,
        "capacity_peer_sessions": args.capacity_peer_sessions,
        "capacity_systems": args.capacity_systems,
        "profile_dir": args.profile_server,
    }
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = build_config(args)
    chosen = args.only or list(SCENARIOS)
    unknown = [name for name in chosen if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    data_dir = Path(tempfile.mkdtemp(prefix="voiceagent-bench-data-"))
    try:
        return _run(cfg, chosen, Context(cfg, data_dir))
    finally:
        stop_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def _run(cfg: BenchConfig, chosen: list[str], ctx: Context) -> int:
    meta = environment()
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    started = time.perf_counter()
    for name in chosen:
        ctx.log(f"scenario {name}: {SCENARIOS[name].title}")
        try:
            figures.extend(SCENARIOS[name].run(ctx))
        except Exception:  # the other scenarios still run; the exit status says it failed
            errors[name] = traceback.format_exc()
            ctx.log(f"scenario {name} FAILED:\n{errors[name]}")
    seconds = time.perf_counter() - started
    path = write_json(cfg.results_dir, cfg, figures, meta, errors, seconds, summaries(ctx))
    print(table(figures))
    print(f"\n{len(figures)} figures in {seconds:.0f} s on {meta['cores']} cores; JSON: {path}")
    if errors:
        print(f"FAILED scenarios: {', '.join(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
