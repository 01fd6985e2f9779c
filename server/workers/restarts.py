"""When to start a dead worker again: at once the first time, then with growing pauses.

A worker that dies again and again (the database down, a crash at start-up) must not spin
the CPU; one that crashed after serving a long while is restarted at once. Pure logic, so it
is tested without processes or a clock.
"""

from __future__ import annotations


class RestartPolicy:
    """Delay before the next start of one worker slot. Each death within `stable_s` seconds
    of the start doubles the delay (from `first_s` up to `max_s`); a worker that lived longer
    than `stable_s` starts over at no delay."""

    def __init__(self, first_s: float = 0.5, max_s: float = 30.0, stable_s: float = 30.0) -> None:
        self.first_s, self.max_s, self.stable_s = first_s, max_s, stable_s
        self.quick_deaths = 0

    def delay(self, lived_s: float) -> float:
        """Seconds to wait before starting again a worker that died after `lived_s` seconds."""
        if lived_s >= self.stable_s:
            self.quick_deaths = 0
            return 0.0
        self.quick_deaths += 1
        return min(self.max_s, self.first_s * 2 ** (self.quick_deaths - 1))
