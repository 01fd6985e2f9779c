"""Why a live session stopped, and the one rule for what that means for the stored session.

A reason is either final (the session is over for good: its row gets `ended_at` and the
reason) or not (the stream ended but the session stays resumable, e.g. the client dropped or
the server restarted). Edges only say which reason applies; the opener applies the rule.
"""

from __future__ import annotations

from enum import StrEnum


class EndReason(StrEnum):
    # Resumable: the conversation may go on in a new stream.
    INPUT_ENDED = "input_ended"  # the client half-closed or sent end of input
    CLIENT_GONE = "closed"  # the stream or socket dropped
    DISCONNECTED = "disconnected"  # POST /ws/disconnect: the socket is closed, not the session
    SHUTDOWN = "shutdown"  # the server is stopping
    SETUP_FAILED = "setup_failed"  # a WebRTC call could not be set up
    IDLE = "idle"  # no input and no agent activity for SESSION_IDLE_TIMEOUT_S
    # Final: the session is over.
    HANG_UP = "hang_up"  # the caller (or an admin) hung up
    ENDED_BY_REQUEST = "ended_by_request"  # EndSession without a reason of its own
    CONNECTION_FAILED = "connection_failed"  # WebRTC: ICE/DTLS failed
    ICE_TIMEOUT = "ice_timeout"  # WebRTC: never connected within the limit
    CONNECTION_LOST = "connection_lost"  # WebRTC: disconnected for longer than the limit
    SESSION_ENDED = "session_ended"  # WebRTC: the session stopped by itself
    MAX_DURATION = "max_duration"  # MAX_SESSION_DURATION_S reached
    AGENT_HUNG_UP = "agent_hung_up"  # the agent's end_call tool, after its goodbye was heard

    @property
    def final(self) -> bool:
        return self not in RESUMABLE

    @classmethod
    def of(cls, value: str) -> EndReason:
        """A session's end_reason ("" when nobody set one: its input simply ended)."""
        try:
            return cls(value) if value else cls.INPUT_ENDED
        except ValueError:
            return cls.CLIENT_GONE


RESUMABLE = frozenset(
    {
        EndReason.INPUT_ENDED,
        EndReason.CLIENT_GONE,
        EndReason.DISCONNECTED,
        EndReason.SHUTDOWN,
        EndReason.SETUP_FAILED,
        EndReason.IDLE,
    }
)
