"""Per-tenant limits on live sessions: how many at once, and how many started per minute.

Plain logic with an injectable clock, so the rules are tested without a server. A refusal is
RATE_LIMITED with the seconds after which a retry can succeed (gRPC RetryInfo, HTTP
Retry-After). The server-wide MAX_SESSIONS stays in the live registry.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from server.sessions.errors import Kind, RequestError

WINDOW_S = 60.0


@dataclass(frozen=True)
class TenantLimits:
    max_sessions: int
    starts_per_minute: int
    max_session_s: float


class TenantAdmission:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._live: dict[str, int] = {}
        self._starts: dict[str, deque[float]] = {}

    def live(self, tenant_id: str) -> int:
        return self._live.get(tenant_id, 0)

    def admit(self, tenant_id: str, limits: TenantLimits) -> None:
        """Count a new live session of `tenant_id`, or refuse it (RATE_LIMITED)."""
        now = self.clock()
        starts = self._starts.setdefault(tenant_id, deque())
        while starts and now - starts[0] >= WINDOW_S:
            starts.popleft()
        if self.live(tenant_id) >= limits.max_sessions:
            raise RequestError(
                f"tenant {tenant_id!r} is at its limit of {limits.max_sessions} live sessions; "
                "end one or retry later",
                Kind.RATE_LIMITED,
                retry_after_s=5.0,
            )
        if len(starts) >= limits.starts_per_minute:
            wait = WINDOW_S - (now - starts[0])
            raise RequestError(
                f"tenant {tenant_id!r} may start {limits.starts_per_minute} sessions per minute; "
                f"retry in {wait:.0f} s",
                Kind.RATE_LIMITED,
                retry_after_s=max(1.0, wait),
            )
        starts.append(now)
        self._live[tenant_id] = self.live(tenant_id) + 1

    def release(self, tenant_id: str) -> None:
        left = self.live(tenant_id) - 1
        if left > 0:
            self._live[tenant_id] = left
        else:
            self._live.pop(tenant_id, None)
            if not self._starts.get(tenant_id):
                self._starts.pop(tenant_id, None)
