"""Session leases in Postgres: which server process owns each live session, cluster-wide.

Why: several server processes (workers on one box, replicas on several) share one database
and must behave as one server. A live session is owned by the process that runs its stream;
its lease row says so and is renewed by that owner's heartbeat. A lease past `expires_at` is
nobody's (the owner died or lost the database), so the session can be resumed anywhere.

Claiming is admission: under one transaction-level advisory lock the claim counts the live
leases (MAX_SESSIONS), the tenant's (TENANT_MAX_SESSIONS) and the tenant's starts of the last
minute, then inserts the lease, so limits hold across processes. The decision itself is the
plain function `refusal`, testable without a database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import asyncpg

from server.sessions.errors import Kind, RequestError
from server.sessions.limits import WINDOW_S, TenantLimits

CLAIM_LOCK = 0x766F696366  # advisory lock key of admissions (migrations use ...65)


@dataclass(frozen=True, kw_only=True)
class Lease:
    session_id: str
    tenant_id: str
    owner_id: str
    edge: str
    detail: dict


@dataclass(frozen=True, kw_only=True)
class Counts:
    """What a claim sees under the lock."""

    holder: str | None  # the owner of a live lease on this session, if any
    live: int  # live leases of other sessions, every tenant
    tenant_live: int  # of them, the tenant's
    tenant_starts: int  # the tenant's starts in the last minute
    oldest_start_age_s: float  # age of the oldest of those starts


def busy(session_id: str) -> RequestError:
    """The one refusal for a second stream on a session, wherever the first one runs."""
    return RequestError(
        f"session {session_id} is busy: it already has a live stream or request; "
        "end it first or retry when it has finished",
        Kind.CONFLICT,
    )


def full(limit: int) -> RequestError:
    return RequestError(
        f"the server is at its limit of {limit} live sessions; retry later", Kind.EXHAUSTED
    )


def refusal(
    counts: Counts,
    *,
    session_id: str,
    tenant_id: str,
    owner_id: str,
    max_sessions: int,
    tenant: TenantLimits | None,
) -> RequestError | None:
    """Why this claim must be refused (the same errors as one process gives), or None."""
    if counts.holder is not None and counts.holder != owner_id:
        return busy(session_id)
    if counts.live >= max_sessions:
        return full(max_sessions)
    if tenant is None:
        return None
    if counts.tenant_live >= tenant.max_sessions:
        return RequestError(
            f"tenant {tenant_id!r} is at its limit of {tenant.max_sessions} live sessions; "
            "end one or retry later",
            Kind.RATE_LIMITED,
            retry_after_s=5.0,
        )
    if counts.tenant_starts >= tenant.starts_per_minute:
        wait = WINDOW_S - counts.oldest_start_age_s
        return RequestError(
            f"tenant {tenant_id!r} may start {tenant.starts_per_minute} sessions per minute; "
            f"retry in {wait:.0f} s",
            Kind.RATE_LIMITED,
            retry_after_s=max(1.0, wait),
        )
    return None


_COUNTS = """
SELECT
  (SELECT owner_id FROM session_leases WHERE session_id = $1 AND expires_at > now()) AS holder,
  (SELECT count(*) FROM session_leases WHERE expires_at > now() AND session_id <> $1) AS live,
  (SELECT count(*) FROM session_leases
    WHERE tenant_id = $2 AND expires_at > now() AND session_id <> $1) AS tenant_live,
  s.n AS tenant_starts, coalesce(extract(epoch FROM now() - s.oldest), 0) AS oldest_age
FROM (SELECT count(*) AS n, min(started_at) AS oldest FROM session_starts
      WHERE tenant_id = $2 AND started_at > now() - make_interval(secs => $3)) AS s"""

_UPSERT = """
INSERT INTO session_leases (session_id, tenant_id, owner_id, edge, expires_at)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))
ON CONFLICT (session_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id,
  owner_id = EXCLUDED.owner_id, edge = EXCLUDED.edge, detail = '{}', claimed_at = now(),
  expires_at = EXCLUDED.expires_at"""

_RENEW = """
INSERT INTO session_leases AS l (session_id, tenant_id, owner_id, edge, detail, expires_at)
SELECT s, t, $1, e, d::jsonb, now() + make_interval(secs => $2)
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS u(s, t, e, d)
ON CONFLICT (session_id) DO UPDATE SET expires_at = EXCLUDED.expires_at,
  detail = EXCLUDED.detail, owner_id = EXCLUDED.owner_id, tenant_id = EXCLUDED.tenant_id,
  edge = EXCLUDED.edge
WHERE l.owner_id = EXCLUDED.owner_id OR l.expires_at <= now()
RETURNING session_id"""

_LIVE = """
SELECT session_id, tenant_id, owner_id, edge, detail FROM session_leases
WHERE expires_at > now() AND ($1::text IS NULL OR tenant_id = $1)
  AND ($2::text IS NULL OR edge = $2)
ORDER BY claimed_at"""


async def claim(
    pool: asyncpg.Pool,
    *,
    owner_id: str,
    session_id: str,
    tenant_id: str,
    edge: str,
    lease_s: float,
    max_sessions: int,
    tenant: TenantLimits | None,
) -> None:
    """Take the lease of `session_id` for `owner_id`, or raise the RequestError a single
    process would (busy, full, tenant limits). Atomic across every process on the database."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        row = await conn.fetchrow(_COUNTS, session_id, tenant_id, WINDOW_S)
        assert row is not None  # one row, always
        counts = Counts(
            holder=row["holder"],
            live=row["live"],
            tenant_live=row["tenant_live"],
            tenant_starts=row["tenant_starts"],
            oldest_start_age_s=float(row["oldest_age"]),
        )
        refused = refusal(
            counts,
            session_id=session_id,
            tenant_id=tenant_id,
            owner_id=owner_id,
            max_sessions=max_sessions,
            tenant=tenant,
        )
        if refused is not None:
            raise refused
        await conn.execute(_UPSERT, session_id, tenant_id, owner_id, edge, lease_s)
        if tenant is not None:
            await conn.execute(
                "DELETE FROM session_starts WHERE tenant_id = $1 "
                "AND started_at <= now() - make_interval(secs => $2)",
                tenant_id,
                WINDOW_S,
            )
            await conn.execute("INSERT INTO session_starts (tenant_id) VALUES ($1)", tenant_id)


async def renew(pool: asyncpg.Pool, owner_id: str, lease_s: float, held: list[Lease]) -> set[str]:
    """Extend (or take again, after an outage) every lease in `held`; the ids now ours."""
    if not held:
        return set()
    rows = await pool.fetch(
        _RENEW,
        owner_id,
        lease_s,
        [h.session_id for h in held],
        [h.tenant_id for h in held],
        [h.edge for h in held],
        [json.dumps(h.detail) for h in held],
    )
    return {r["session_id"] for r in rows}


async def release(pool: asyncpg.Pool, owner_id: str, session_id: str) -> None:
    await pool.execute(
        "DELETE FROM session_leases WHERE session_id = $1 AND owner_id = $2", session_id, owner_id
    )


async def release_all(pool: asyncpg.Pool, owner_id: str, keep: list[str]) -> None:
    """Drop this owner's leases except `keep` (ones whose release failed during an outage)."""
    await pool.execute(
        "DELETE FROM session_leases WHERE owner_id = $1 AND NOT (session_id = ANY($2::text[]))",
        owner_id,
        keep,
    )


async def prune(pool: asyncpg.Pool) -> None:
    """Forget leases expired a minute ago (owners that died) and old starts."""
    await pool.execute("DELETE FROM session_leases WHERE expires_at < now() - interval '1 minute'")
    await pool.execute(
        "DELETE FROM session_starts WHERE started_at < now() - make_interval(secs => $1)",
        WINDOW_S,
    )


def _lease(row: asyncpg.Record) -> Lease:
    detail = row["detail"]
    return Lease(
        session_id=row["session_id"],
        tenant_id=row["tenant_id"],
        owner_id=row["owner_id"],
        edge=row["edge"],
        detail=json.loads(detail) if isinstance(detail, str) else dict(detail),
    )


async def live(
    pool: asyncpg.Pool, tenant_id: str | None = None, edge: str | None = None
) -> list[Lease]:
    """Every live lease (of `tenant_id`, on `edge`, when given), oldest first."""
    return [_lease(r) for r in await pool.fetch(_LIVE, tenant_id, edge)]


async def holder(pool: asyncpg.Pool, session_id: str) -> Lease | None:
    row = await pool.fetchrow(
        "SELECT session_id, tenant_id, owner_id, edge, detail FROM session_leases "
        "WHERE session_id = $1 AND expires_at > now()",
        session_id,
    )
    return _lease(row) if row else None


async def live_ids(pool: asyncpg.Pool, session_ids: list[str]) -> set[str]:
    rows = await pool.fetch(
        "SELECT session_id FROM session_leases "
        "WHERE session_id = ANY($1::text[]) AND expires_at > now()",
        session_ids,
    )
    return {r["session_id"] for r in rows}
