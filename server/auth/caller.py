"""A caller: its tenant, what it may do, and (for a client token) the one session it may touch.

Verbs: `converse` opens streams and turns on sessions (and hangs up its own); `read` reads
stored sessions, transcripts and live status; `admin` manages keys. An API key has every verb
of its tenant (plus `admin` if it is an admin key); a client token only the verbs minted into
it, optionally for one session.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.sessions.errors import Kind, RequestError

CONVERSE, READ, ADMIN = "converse", "read", "admin"
TOKEN_VERBS = (CONVERSE, READ)
KEY_VERBS = frozenset(TOKEN_VERBS)


@dataclass(frozen=True, kw_only=True)
class Caller:
    tenant_id: str
    verbs: frozenset[str]
    key_id: str = ""  # the API key (for a token: the key that minted it); "" when auth is off
    session_id: str = ""  # a token scoped to one session; "" = any of the tenant's
    via_token: bool = False

    def require(self, verb: str, session_id: str = "") -> None:
        """PERMISSION_DENIED unless this caller may `verb` (on `session_id`, if given)."""
        if verb not in self.verbs:
            what = "a client token" if self.via_token else "this API key"
            raise RequestError(
                f"{what} does not allow {verb!r} (it allows: {', '.join(sorted(self.verbs))})",
                Kind.PERMISSION_DENIED,
            )
        if self.session_id and session_id != self.session_id:
            raise RequestError(
                f"this client token is for session {self.session_id} only",
                Kind.PERMISSION_DENIED,
            )

    def may_see(self, session_id: str) -> bool:
        """For listings: a session-scoped token sees only its session."""
        return not self.session_id or session_id == self.session_id


def open_access(tenant_id: str = "default") -> Caller:
    """Authentication is off (no keys, loopback only): everyone is the default tenant."""
    return Caller(tenant_id=tenant_id, verbs=frozenset({CONVERSE, READ, ADMIN}))
