"""Small statistics without numpy, so results are exact and NaN-safe (NaN = no data)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

NAN = float("nan")


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, like numpy's default."""
    data = sorted(x for x in samples if not math.isnan(x))
    if not data:
        return NAN
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Iterable[float]) -> float:
    """Median of the values that are not NaN; NaN when there are none."""
    return percentile(list(values), 50.0)


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def ratio(a: float, b: float) -> float:
    return a / b if finite(a) and finite(b) and b != 0 else NAN
