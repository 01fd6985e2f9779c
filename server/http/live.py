"""Sessions for HTTP requests and WebSockets, created and resumed the way Converse does it.

Every REST turn and every WebSocket runs one `VoiceSession`, registered in `LiveSessions` like
a gRPC stream, so limits, hang-up by EndSession, graceful shutdown and persistence behave the
same on every edge. Resuming and saving reuse the Converse handler's own code; errors are
`InvalidRequest`s with gRPC codes, which the HTTP layer maps to statuses (errors.py).
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING

import grpc
from voiceagent.v1 import audio_pb2, converse_pb2

from pipeline.audio import PIPELINE_RATE
from pipeline.session import SessionOptions
from server import validation as check
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions import SessionRecord
from server.validation import InvalidRequest

if TYPE_CHECKING:
    from server.app import VoiceServer

# Client-chosen ids that are not UUIDs ("session123") map to uuid5(CLIENT_ID_NAMESPACE, id):
# the same string always names the same session, on any server of this deployment.
CLIENT_ID_NAMESPACE = uuid.UUID("6f1c5d2e-4b7a-5c39-9e0d-8a2b3c4d5e6f")
OUTPUT_RATE = 24_000  # agent audio inside the pipeline; files are encoded from it
NO_PACING_MS = 1e9  # REST: the whole reply at once, nobody is listening in real time
LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


def session_uuid(raw: str) -> str:
    """The stored id for a client's session id: itself if it is a UUID, else its uuid5."""
    check.bounded_text(raw, "session_id", check.MAX_NAME_CHARS, required=True)
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return str(uuid.uuid5(CLIENT_ID_NAMESPACE, raw))


class SessionAccess:
    def __init__(self, server: VoiceServer) -> None:
        assert server.store is not None, "the server must be started first"
        self.server, self.store, self.live = server, server.store, server.live
        self.opener = server.opener

    async def resume(
        self, session_id: str, audio_input: bool, lead_ms: float = NO_PACING_MS
    ) -> tuple[SessionRecord, SessionOptions]:
        """Load a stored session (404 unknown, 409 ended, 503 database down) and the options
        of a stream on it: text and whole utterances, plus 16 kHz mono PCM if `audio_input`."""
        config = converse_pb2.SessionConfig(
            session_id=session_id,
            output_format=audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=OUTPUT_RATE),
        )
        if audio_input:
            config.input_format.CopyFrom(
                audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=PIPELINE_RATE, channels=1)
            )
        record, options, _ = await self.opener.open(config)
        return record, dataclasses.replace(options, output_lead_ms=lead_ms)

    async def create(
        self, customer_id: str, instructions: str | None, voice: str | None
    ) -> SessionRecord:
        """A new session, durable before this returns (like the CreateSession RPC)."""
        return await self.store.create_now(
            customer_id, instructions or self.server.settings.instructions, voice
        )

    async def ensure(self, session_id: str, customer_id: str = "") -> bool:
        """Create the session under this exact id unless it exists; True if it was created.
        Idempotent (the insert is ON CONFLICT DO NOTHING), so racing connections agree."""
        try:
            if await self.store.get(session_id) is not None:
                return False
            await self.store.create_now(
                customer_id, self.server.settings.instructions, None, session_id
            )
        except DB_DOWN as exc:
            raise InvalidRequest(
                f"cannot open session {session_id}: the database is unavailable ({exc})",
                grpc.StatusCode.UNAVAILABLE,
            ) from None
        return True

    def running(self, record: SessionRecord, options: SessionOptions):
        """A started, registered session on `record`; closed and saved on exit."""
        return self.opener.running(record, options)
