"""The scenario registry and the figure model every scenario reports in.

A scenario is a function `(ctx) -> list[Figure]` registered with `@scenario`. It measures
several runs and hands each run's raw numbers to a `Recorder`, which turns them into figures:
the median over runs of a value, or of each run's p50 and p99 for a latency. Later figures
(persistence writer, WebRTC per-call CPU, offline models) are one more module in
`bench.scenarios` with one more `@scenario`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench.stats import NAN, finite, median, percentile

if TYPE_CHECKING:
    from bench.context import Context


@dataclass(frozen=True)
class Goal:
    """A target from the issue, e.g. Goal("p99", "<=", 30): checked on the aggregated figure."""

    stat: str  # "value" | "p50" | "p99"
    op: str  # "<=" | ">="
    limit: float

    def text(self) -> str:
        return f"{'' if self.stat == 'value' else self.stat + ' '}{self.op} {self.limit:g}"

    def met(self, fig: Figure) -> bool | None:
        x = getattr(fig, self.stat)
        if not finite(x):
            return None
        return x <= self.limit if self.op == "<=" else x >= self.limit


@dataclass(frozen=True)
class Spec:
    """What a figure is: label, unit, whether it is a latency (p50/p99), goals."""

    label: str
    unit: str
    latency: bool = False
    goals: tuple[Goal, ...] = ()
    note: str = ""


@dataclass
class Figure:
    scenario: str
    key: str
    label: str
    unit: str
    value: float | None = None  # scalar figures: median over runs
    p50: float | None = None  # latencies: median over runs of each run's p50 / p99
    p99: float | None = None
    runs: list[dict] = field(default_factory=list)  # per-run numbers, for the JSON
    goals: list[str] = field(default_factory=list)
    ok: bool | None = None  # every goal met; None when there is no goal or no data
    note: str = ""


def make_figure(scenario: str, key: str, spec: Spec, runs: list[dict]) -> Figure:
    fig = Figure(scenario, key, spec.label, spec.unit, runs=runs, note=spec.note)
    if spec.latency:
        fig.p50 = median(r.get("p50", NAN) for r in runs)
        fig.p99 = median(r.get("p99", NAN) for r in runs)
    else:
        fig.value = median(r.get("value", NAN) for r in runs)
    fig.goals = [g.text() for g in spec.goals]
    verdicts = [g.met(fig) for g in spec.goals]
    fig.ok = None if not verdicts or None in verdicts else all(verdicts)
    return fig


class Recorder:
    """Collects runs of one scenario: `add(key, samples_or_value)` per run, then `figures()`."""

    def __init__(self, scenario: str, specs: dict[str, Spec]) -> None:
        self.scenario = scenario
        self.specs = dict(specs)
        self.runs: dict[str, list[dict]] = {k: [] for k in specs}

    def add(self, key: str, data: float | Sequence[float]) -> None:
        spec = self.specs[key]
        if spec.latency:
            samples = list(data)  # type: ignore[arg-type]
            entry = {
                "n": len(samples),
                "p50": percentile(samples, 50),
                "p99": percentile(samples, 99),
            }
        else:
            entry = {"value": float(data)}  # type: ignore[arg-type]
        self.runs[key].append(entry)

    def figure(self, key: str) -> Figure:
        return make_figure(self.scenario, key, self.specs[key], self.runs[key])

    def figures(self) -> list[Figure]:
        return [self.figure(k) for k in self.specs]


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Context], list[Figure]]


SCENARIOS: dict[str, Scenario] = {}  # in registration (= table) order


def scenario(name: str, title: str):
    """Register a scenario function under `name` (used by `--only`)."""

    def register(func: Callable[[Context], list[Figure]]) -> Callable[[Context], list[Figure]]:
        if name in SCENARIOS:
            raise ValueError(f"scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name, title, func)
        return func

    return register
