"""Where a tenant's limits come from: its row in `tenants`, else the server's defaults.

Looked up when a session starts, so it is cached briefly (a `server.keys limits` change takes
effect within LIMITS_CACHE_S); with the database down the last known limits still apply.
"""

from __future__ import annotations

import time

from server.config import Settings
from server.persistence.database import Database
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions.limits import TenantLimits

LIMITS_CACHE_S = 10.0


class TenantLimitsLookup:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self._cached: dict[str, tuple[float, TenantLimits]] = {}

    async def get(self, tenant: str) -> TenantLimits:
        now = time.monotonic()
        cached = self._cached.get(tenant)
        if cached is not None and now - cached[0] < LIMITS_CACHE_S:
            return cached[1]
        s = self.settings
        row = None
        try:
            row = await self.db.pool.fetchrow(
                "SELECT max_sessions, starts_per_minute, max_session_s FROM tenants WHERE id = $1",
                tenant,
            )
        except DB_DOWN:
            if cached is not None:
                return cached[1]
        limits = TenantLimits(
            max_sessions=(row and row["max_sessions"]) or s.tenant_max_sessions,
            starts_per_minute=(row and row["starts_per_minute"]) or s.tenant_starts_per_minute,
            max_session_s=float((row and row["max_session_s"]) or s.max_session_duration_s),
        )
        self._cached[tenant] = (now, limits)
        return limits
