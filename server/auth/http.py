"""Bearer authentication for everything served over HTTP: the REST routes and WebSocket (the
HTTP edge) and the WebRTC signalling (its own edge), so both share this one dependency.
`Authorization: Bearer <API key or client token>`.

Browsers cannot set headers on a WebSocket, so a socket may instead pass a client token (never
an API key: URLs end up in logs and histories) as `?token=`. The OpenAPI document declares the
bearer scheme, so /docs has an "Authorize" button to type a key into.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from server.auth import keys
from server.auth.caller import Caller
from server.core import Core
from server.sessions.errors import Kind, RequestError

HOW = "send the header `Authorization: Bearer <credential>`"
WS_HOW = (
    "send the header `Authorization: Bearer <credential>`, or a client token as `?token=` "
    "(mint one with POST /v1/client-tokens)"
)
scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="API key or client token",
    description="An API key (`vak_...`, from `python -m server.keys create`) or a client "
    "token from POST /v1/client-tokens.",
)


async def caller(
    conn: HTTPConnection,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
) -> Caller:
    core: Core = conn.app.state.core
    return await core.auth.authenticate(credentials.credentials if credentials else None, how=HOW)


CallerDep = Annotated[Caller, Depends(caller)]


async def socket_caller(conn: HTTPConnection, token: str | None) -> Caller:
    """A WebSocket's caller: its Authorization header, else `?token=` (tokens only)."""
    core: Core = conn.app.state.core
    header = conn.headers.get("authorization", "")
    scheme_name, _, credential = header.partition(" ")
    if scheme_name.lower() == "bearer" and credential.strip():
        return await core.auth.authenticate(credential.strip(), how=WS_HOW)
    if token and token.startswith(f"{keys.PREFIX}_"):
        raise RequestError(
            "API keys are not accepted in URLs (they would end up in logs): send the key in "
            "the Authorization header, or mint a client token and pass it as ?token=",
            Kind.UNAUTHENTICATED,
        )
    return await core.auth.authenticate(token or None, how=WS_HOW)
