"""Short-lived client tokens: what a browser or phone holds instead of an API key.

A backend holding a key mints one (POST /v1/client-tokens, AuthService/CreateClientToken):
a JWT (PyJWT, HS256, signed with the server's token secret) naming the tenant, the minting
key, the verbs and optionally one session, valid for `ttl_s` (default 10 min, at most 2 h).
Verifying needs no database: the signature, the expiry and the minting key not revoked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from server.auth.caller import TOKEN_VERBS, Caller

ISSUER = "voiceagent"
ALGORITHM = "HS256"
DEFAULT_TTL_S = 600
MAX_TTL_S = 7200


class BadToken(ValueError):
    """Expired, tampered with, or not ours; the message says which, never the token."""


@dataclass(frozen=True)
class Minted:
    token: str
    expires_at: float  # unix time


def check_request(verbs: list[str], ttl_s: int) -> None:
    unknown = [v for v in verbs if v not in TOKEN_VERBS]
    if unknown or not verbs:
        raise ValueError(f"verbs must be a non-empty subset of {list(TOKEN_VERBS)}")
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds")


def mint(
    secret: bytes, *, tenant_id: str, key_id: str, verbs: list[str], session_id: str, ttl_s: int
) -> Minted:
    check_request(verbs, ttl_s)
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": tenant_id,
        "kid": key_id,
        "scope": " ".join(sorted(set(verbs))),
        "iat": now,
        "exp": now + ttl_s,
    }
    if session_id:
        claims["sid"] = session_id
    return Minted(jwt.encode(claims, secret, algorithm=ALGORITHM), now + ttl_s)


def verify(secret: bytes, token: str) -> Caller:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "kid", "scope"]},
        )
    except jwt.ExpiredSignatureError:
        raise BadToken("the client token has expired; mint a new one") from None
    except jwt.PyJWTError:
        raise BadToken("the client token is not valid (bad signature or malformed)") from None
    verbs = frozenset(str(claims["scope"]).split()) & frozenset(TOKEN_VERBS)
    return Caller(
        tenant_id=str(claims["sub"]),
        verbs=verbs,
        key_id=str(claims["kid"]),
        session_id=str(claims.get("sid", "")),
        via_token=True,
    )
