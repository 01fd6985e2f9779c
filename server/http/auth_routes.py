"""Client tokens (POST /v1/client-tokens) and, for admin keys, API keys (/v1/keys).

A backend holding an API key mints a short-lived token for a browser or phone; the token, not
the key, goes to the device. Keys themselves are managed here by an admin key, or with the CLI
(`python -m server.keys`), which works whether or not the server runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from server.auth import keys
from server.auth.caller import ADMIN, TOKEN_VERBS
from server.auth.http import CallerDep
from server.auth.tokens import DEFAULT_TTL_S, MAX_TTL_S
from server.http.deps import CoreDep
from server.http.errors import ERROR_RESPONSES
from server.sessions import ids
from server.sessions.reads import database_errors

router = APIRouter(tags=["Authentication"])
Verb = Literal["converse", "read"]  # TOKEN_VERBS, as the schema states them


class ClientTokenIn(BaseModel):
    session_id: str | None = Field(
        None, max_length=200, description="Only this session (a UUID or a client-chosen id)."
    )
    verbs: list[Verb] = Field(
        default_factory=lambda: list[Verb](["converse"]),
        min_length=1,
        description=f"Any of {list(TOKEN_VERBS)}: `converse` opens streams and turns, `read` "
        "reads sessions and transcripts.",
    )
    ttl_s: int = Field(DEFAULT_TTL_S, ge=1, le=MAX_TTL_S, description="Lifetime in seconds.")


class ClientTokenOut(BaseModel):
    token: str = Field(description="`Authorization: Bearer <token>`, or `?token=` on a socket.")
    expires_at: datetime
    tenant_id: str
    session_id: str | None
    verbs: list[str]


class KeyIn(BaseModel):
    tenant_id: str = Field(pattern=keys.TENANT_RE.pattern, description="Created if new.")
    name: str = Field("", max_length=200, description="What the key is for.")
    admin: bool = Field(False, description="May manage keys of every tenant.")


class KeyOut(BaseModel):
    id: str = Field(description="Public id: revoke by it.")
    tenant_id: str
    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyList(BaseModel):
    keys: list[KeyOut]


class NewKeyOut(KeyOut):
    key: str = Field(description="The whole key. Shown only once: store it now.")


def key_out(info: keys.KeyInfo) -> KeyOut:
    return KeyOut(**vars(info))


@router.post(
    "/v1/client-tokens",
    summary="Mint a short-lived client token",
    response_model=ClientTokenOut,
    responses=ERROR_RESPONSES,
)
async def client_token(body: ClientTokenIn, core: CoreDep, caller: CallerDep) -> ClientTokenOut:
    """Needs an API key. The token carries the key's tenant, the verbs asked for, and, with
    `session_id`, that one session; it expires after `ttl_s` (default 600, at most 7200) and
    dies with the key that minted it."""
    sid = ids.client_chosen(body.session_id, caller.tenant_id) if body.session_id else ""
    minted = core.auth.mint(caller, verbs=list(body.verbs), session_id=sid, ttl_s=body.ttl_s)
    return ClientTokenOut(
        token=minted.token,
        expires_at=datetime.fromtimestamp(minted.expires_at, UTC),
        tenant_id=caller.tenant_id,
        session_id=sid or None,
        verbs=sorted(set(body.verbs)),
    )


@router.post("/v1/keys", summary="Create an API key (admin)", response_model=NewKeyOut,
             responses=ERROR_RESPONSES)  # fmt: skip
async def create_key(body: KeyIn, core: CoreDep, caller: CallerDep) -> NewKeyOut:
    caller.require(ADMIN)  # body.tenant_id is checked by its schema pattern
    with database_errors():
        key, info = await keys.create(
            core.db.pool, body.tenant_id, name=body.name, admin=body.admin
        )
    await core.auth.refresh()  # authentication turns on with the first key
    return NewKeyOut(key=key, **vars(info))


@router.get("/v1/keys", summary="List API keys (admin)", response_model=KeyList,
            responses=ERROR_RESPONSES)  # fmt: skip
async def list_keys(
    core: CoreDep, caller: CallerDep, tenant_id: Annotated[str | None, Query(max_length=63)] = None
) -> KeyList:
    caller.require(ADMIN)
    with database_errors():
        return KeyList(keys=[key_out(k) for k in await keys.list_keys(core.db.pool, tenant_id)])


@router.delete("/v1/keys/{key_id}", summary="Revoke an API key (admin)", response_model=KeyOut,
               responses=ERROR_RESPONSES)  # fmt: skip
async def revoke_key(key_id: str, core: CoreDep, caller: CallerDep) -> KeyOut:
    """The key and every client token it minted stop working (at once on this server, within
    a few seconds on others)."""
    caller.require(ADMIN)
    with database_errors():
        info = await keys.revoke(core.db.pool, key_id[:64])
    if info is None:
        raise HTTPException(404, f"no API key {key_id[:64]!r}")
    core.auth.forget(info.id)
    return key_out(info)
