"""Session ids: strict UUIDs, and the ids clients pick for themselves.

The gRPC API takes stored UUIDs only. The original REST/WebSocket clients name sessions with
their own strings ("session123"); such a string stands for uuid5(CLIENT_ID_NAMESPACE, it), so
the same string always names the same session, on any server of a deployment.
"""

from __future__ import annotations

import uuid

from server.sessions import checks
from server.sessions.errors import RequestError

DEFAULT_TENANT = "default"
CLIENT_ID_NAMESPACE = uuid.UUID("6f1c5d2e-4b7a-5c39-9e0d-8a2b3c4d5e6f")


def strict(value: str) -> str:
    """A stored session id, canonical; INVALID unless it is a UUID."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise RequestError(f"session_id {value[:64]!r} is not a UUID") from None


def client_chosen(raw: str, tenant_id: str = DEFAULT_TENANT) -> str:
    """The stored id for a client's session id: itself if it is a UUID, else its uuid5 —
    within the tenant, so two tenants' "session123" are two sessions."""
    checks.bounded_text(raw, "session_id", checks.MAX_NAME_CHARS, required=True)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        name = raw if tenant_id == DEFAULT_TENANT else f"{tenant_id}/{raw}"
        return str(uuid.uuid5(CLIENT_ID_NAMESPACE, name))
