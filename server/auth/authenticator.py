"""Turns a bearer credential into a `Caller`, and knows whether authentication is on.

Authentication is on as soon as one unrevoked API key exists (or REQUIRE_AUTH=true); the
server re-checks every few seconds, so a key created by the CLI in another process takes
effect without a restart. API keys are looked up in Postgres (cached for a few seconds);
client tokens are verified from their signature alone, plus a set of revoked key ids that is
refreshed with the same period, so revoking a key also revokes every token it minted.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import asyncpg

from server.auth import keys, tokens
from server.auth.caller import ADMIN, KEY_VERBS, Caller, open_access
from server.sessions.errors import Kind, RequestError

log = logging.getLogger(__name__)
REFRESH_S = 5.0
KEY_CACHE_S = 5.0


class Authenticator:
    def __init__(
        self, *, pool: asyncpg.Pool, secret: bytes, require_auth: bool, refresh_s: float
    ) -> None:
        self.pool, self.secret = pool, secret
        self.require_auth, self.refresh_s = require_auth, refresh_s
        self.enabled = require_auth
        self._revoked: set[str] = set()
        self._keys: dict[str, tuple[float, asyncpg.Record | None]] = {}

    @classmethod
    async def open(
        cls,
        pool: asyncpg.Pool,
        *,
        secret: str | None,
        require_auth: bool,
        refresh_s: float = REFRESH_S,
    ) -> Authenticator:
        """`secret`: the token-signing secret; None = one kept in the database, shared by
        every process on it (made on first use)."""
        key = secret.encode() if secret else await _stored_secret(pool)
        auth = cls(pool=pool, secret=key, require_auth=require_auth, refresh_s=refresh_s)
        await auth.refresh()
        return auth

    async def refresh(self) -> None:
        enabled = self.require_auth or await keys.any_active(self.pool)
        if enabled != self.enabled:
            log.warning("authentication is now %s", "ON" if enabled else "OFF")
        self.enabled = enabled
        self._revoked = await keys.revoked_ids(self.pool)

    async def run(self) -> None:
        """Refresh forever (a database outage keeps the last known state)."""
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("auth refresh failed: %r", exc)

    def forget(self, key_id: str) -> None:
        """A key was revoked here: effective now in this process (others within refresh_s)."""
        self._keys.pop(key_id, None)
        self._revoked.add(key_id)

    async def authenticate(self, credential: str | None, *, how: str) -> Caller:
        """The caller for `credential` (the bearer value; None if none was sent). `how` says,
        in the edge's terms, how to send one; it goes into the UNAUTHENTICATED message."""
        if not self.enabled:
            return open_access()
        if not credential:
            raise RequestError(
                f"authentication required: {how} with an API key or a client token",
                Kind.UNAUTHENTICATED,
            )
        if credential.startswith(f"{keys.PREFIX}_"):
            return await self._key(credential, how)
        try:
            caller = tokens.verify(self.secret, credential)
        except tokens.BadToken as exc:
            raise RequestError(f"{exc}; {how}", Kind.UNAUTHENTICATED) from None
        if caller.key_id in self._revoked:
            raise RequestError(
                "the client token was minted by a revoked API key", Kind.UNAUTHENTICATED
            )
        return caller

    async def _key(self, credential: str, how: str) -> Caller:
        try:
            key_id, secret = keys.parse(credential)
        except keys.BadKey as exc:
            raise RequestError(f"{exc}; {how}", Kind.UNAUTHENTICATED) from None
        row = await self._lookup(key_id)
        if row is None or not keys.matches(secret, row["secret_sha256"]):
            raise RequestError("unknown API key", Kind.UNAUTHENTICATED)
        if row["revoked_at"] is not None or key_id in self._revoked:
            raise RequestError(f"API key {key_id} has been revoked", Kind.UNAUTHENTICATED)
        verbs = KEY_VERBS | {ADMIN} if row["admin"] else KEY_VERBS
        return Caller(tenant_id=row["tenant_id"], verbs=frozenset(verbs), key_id=key_id)

    async def _lookup(self, key_id: str) -> asyncpg.Record | None:
        cached = self._keys.get(key_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < KEY_CACHE_S:
            return cached[1]
        try:
            row = await keys.lookup(self.pool, key_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise RequestError(
                f"cannot check the API key: the database is unavailable ({type(exc).__name__})",
                Kind.UNAVAILABLE,
            ) from None
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[key_id] = (now, row)
        return row

    def mint(
        self, caller: Caller, *, verbs: list[str], session_id: str, ttl_s: int
    ) -> tokens.Minted:
        """A client token for `caller`'s tenant; only an API key may mint (not a token)."""
        if caller.via_token:
            raise RequestError(
                "a client token cannot mint tokens: use an API key", Kind.PERMISSION_DENIED
            )
        try:
            return tokens.mint(
                self.secret,
                tenant_id=caller.tenant_id,
                key_id=caller.key_id,
                verbs=verbs,
                session_id=session_id,
                ttl_s=ttl_s,
            )
        except ValueError as exc:
            raise RequestError(str(exc)) from None


async def _stored_secret(pool: asyncpg.Pool) -> bytes:
    await pool.execute(
        """INSERT INTO auth_secrets (name, secret) VALUES ('client_tokens', $1)
           ON CONFLICT (name) DO NOTHING""",
        secrets.token_bytes(32),
    )
    return await pool.fetchval("SELECT secret FROM auth_secrets WHERE name = 'client_tokens'")
