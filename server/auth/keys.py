"""API keys: `<prefix>_<public id>_<secret>`, of which only a hash of the secret is stored.

The secret is 256 random bits, so a plain SHA-256 (not a slow password hash) is the right
tool, as for GitHub or Stripe tokens; comparison is constant-time. Keys are created, listed
and revoked here for the CLI (`python -m server.keys`) and the admin API alike.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

PREFIX = "vak"
TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
KEY_RE = re.compile(rf"^{PREFIX}_([0-9a-f]{{12}})_([0-9A-Za-z]{{43}})$")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class BadKey(ValueError):
    """Not a key of this server's form (the message never repeats the value)."""


@dataclass(frozen=True)
class KeyInfo:
    id: str
    tenant_id: str
    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


def new_secret() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(43))  # ~256 bits


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse(key: str) -> tuple[str, str]:
    """(public id, secret) of a well-formed key, else BadKey."""
    match = KEY_RE.match(key)
    if match is None:
        raise BadKey(f"not an API key (keys look like {PREFIX}_<12 hex>_<43 letters/digits>)")
    return match.group(1), match.group(2)


def matches(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored)


def check_tenant(tenant_id: str) -> str:
    if not TENANT_RE.match(tenant_id):
        raise ValueError(
            "a tenant id is 1-63 lower-case letters, digits, '-' or '_', starting with a "
            "letter or digit"
        )
    return tenant_id


async def create(
    pool: asyncpg.Pool, tenant_id: str, *, name: str = "", admin: bool = False
) -> tuple[str, KeyInfo]:
    """A new key for `tenant_id` (created if new): the whole key, shown once, and its row."""
    check_tenant(tenant_id)
    key_id, secret = secrets.token_hex(6), new_secret()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", tenant_id
        )
        row = await conn.fetchrow(
            """INSERT INTO api_keys (id, tenant_id, secret_sha256, name, admin)
               VALUES ($1, $2, $3, $4, $5) RETURNING *""",
            key_id, tenant_id, digest(secret), name, admin,
        )  # fmt: skip
    assert row is not None  # INSERT ... RETURNING yields the row it inserted, or raises
    return f"{PREFIX}_{key_id}_{secret}", _info(row)


async def list_keys(pool: asyncpg.Pool, tenant_id: str | None = None) -> list[KeyInfo]:
    rows = await pool.fetch(
        """SELECT * FROM api_keys WHERE $1::text IS NULL OR tenant_id = $1
           ORDER BY tenant_id, created_at""",
        tenant_id,
    )
    return [_info(r) for r in rows]


async def revoke(pool: asyncpg.Pool, key_id: str, tenant_id: str | None = None) -> KeyInfo | None:
    """Revoke by public id (within `tenant_id` if given); None if there is no such key."""
    row = await pool.fetchrow(
        """UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
           WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) RETURNING *""",
        key_id,
        tenant_id,
    )
    return _info(row) if row is not None else None


async def lookup(pool: asyncpg.Pool, key_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT id, tenant_id, secret_sha256, admin, revoked_at FROM api_keys WHERE id = $1",
        key_id,
    )


async def any_active(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
    )


async def revoked_ids(pool: asyncpg.Pool) -> set[str]:
    return {
        r["id"] for r in await pool.fetch("SELECT id FROM api_keys WHERE revoked_at IS NOT NULL")
    }


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        admin=row["admin"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def set_limits(
    pool: asyncpg.Pool,
    tenant_id: str,
    *,
    max_sessions: int | None,
    starts_per_minute: int | None,
    max_session_s: int | None,
) -> None:
    """Set a tenant's limits (None leaves one as it is); the tenant is created if new."""
    check_tenant(tenant_id)
    for value in (max_sessions, starts_per_minute, max_session_s):
        if value is not None and value < 1:
            raise ValueError("limits must be positive")
    await pool.execute(
        """INSERT INTO tenants (id, max_sessions, starts_per_minute, max_session_s)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET
             max_sessions = coalesce($2, tenants.max_sessions),
             starts_per_minute = coalesce($3, tenants.starts_per_minute),
             max_session_s = coalesce($4, tenants.max_session_s)""",
        tenant_id, max_sessions, starts_per_minute, max_session_s,
    )  # fmt: skip
