"""voiceagent.v1.SessionService: stored sessions and transcripts over gRPC."""

from __future__ import annotations

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from voiceagent.v1 import converse_pb2, sessions_pb2
from voiceagent.v1 import sessions_pb2_grpc as pb_grpc

from server import validation as check
from server.persistence import queries
from server.persistence.queries import BadPageToken
from server.persistence.writer import TRANSIENT as DB_DOWN
from server.sessions import LiveSessions, SessionStore
from server.validation import InvalidRequest

MAX_PAGE = 500
READ_FLUSH_S = 2.0  # reads first wait this long for queued writes (read-your-writes)


def _timestamp(value) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def session_message(row) -> sessions_pb2.Session:
    return sessions_pb2.Session(
        session_id=str(row["id"]),
        customer_id=row["customer_id"] or "",
        state=converse_pb2.ConversationState.Value(f"CONVERSATION_STATE_{row['state'].upper()}"),
        instructions=row["instructions"],
        voice=row["voice"] or "",
        create_time=_timestamp(row["created_at"]),
        end_time=_timestamp(row["ended_at"]),
        end_reason=row["end_reason"] or "",
        turn_count=row["turn_count"],
    )


def turn_message(row) -> sessions_pb2.Turn:
    turn = sessions_pb2.Turn(
        turn_index=row["turn_index"],
        role=sessions_pb2.TURN_ROLE_USER if row["role"] == "user" else sessions_pb2.TURN_ROLE_AGENT,
        text=row["text"],
        spoken_text=row["spoken_text"] or "",
        interrupted=row["interrupted"],
        start_offset_ms=row["start_offset_ms"] or 0,
        end_offset_ms=row["end_offset_ms"] or 0,
        audio_ms=row["audio_ms"] or 0,
        create_time=_timestamp(row["created_at"]),
    )
    if row["role"] == "agent" and row["llm_first_token_ms"] is not None:
        turn.latency.CopyFrom(
            converse_pb2.TurnLatency(
                vad_stop_to_transcript_ms=row["vad_stop_to_transcript_ms"],
                llm_first_token_ms=row["llm_first_token_ms"],
                tts_first_byte_ms=row["tts_first_byte_ms"],
                end_of_speech_to_first_audio_ms=row["end_of_speech_to_first_audio_ms"],
            )
        )
    return turn


def page_size(value: int, default: int) -> int:
    if value < 0:
        raise InvalidRequest(f"page_size must be between 0 and {MAX_PAGE}, got {value}")
    return min(value or default, MAX_PAGE)


class SessionService(pb_grpc.SessionServiceServicer):
    def __init__(self, store: SessionStore, live: LiveSessions) -> None:
        self.store, self.live = store, live

    async def _guard(self, context, call):
        """Map bad input and database outages to statuses with a message."""
        try:
            return await call()
        except InvalidRequest as exc:
            await context.abort(exc.code, str(exc))
        except BadPageToken as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except DB_DOWN as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"the database is unavailable: {exc}")

    async def _row(self, session_id: str):
        sid = check.session_id(session_id)
        await self.store.writer.flush(READ_FLUSH_S)
        row = await queries.get_session(self.store.db.pool, sid)
        if row is None:
            raise InvalidRequest(f"session {session_id} not found", grpc.StatusCode.NOT_FOUND)
        return row

    async def CreateSession(self, request, context):
        async def call():
            check.bounded_text(request.customer_id, "customer_id", check.MAX_NAME_CHARS)
            check.bounded_text(request.voice, "voice", check.MAX_NAME_CHARS)
            check.bounded_text(request.instructions, "instructions", check.MAX_INSTRUCTIONS_CHARS)
            record = await self.store.create_now(
                request.customer_id, request.instructions, request.voice or None
            )
            row = await queries.get_session(self.store.db.pool, record.id)
            return sessions_pb2.CreateSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def GetSession(self, request, context):
        async def call():
            row = await self._row(request.session_id)
            return sessions_pb2.GetSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def ListSessions(self, request, context):
        async def call():
            check.bounded_text(request.customer_id, "customer_id", check.MAX_NAME_CHARS)
            size = page_size(request.page_size, 50)
            await self.store.writer.flush(READ_FLUSH_S)
            rows, token = await queries.list_sessions(
                self.store.db.pool, request.customer_id, size, request.page_token
            )
            return sessions_pb2.ListSessionsResponse(
                sessions=[session_message(r) for r in rows], next_page_token=token
            )

        return await self._guard(context, call)

    async def EndSession(self, request, context):
        async def call():
            check.bounded_text(request.reason, "reason", check.MAX_NAME_CHARS)
            record = await self.store.get(check.session_id(request.session_id))
            if record is None:
                raise InvalidRequest(
                    f"session {request.session_id} not found", grpc.StatusCode.NOT_FOUND
                )
            live = self.live.get(record.id)
            if live is not None:
                await live.close(reason="hang_up")
            self.store.end(record, request.reason or "ended_by_request")
            row = await self._row(record.id)
            return sessions_pb2.EndSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def ListTurns(self, request, context):
        async def call():
            row = await self._row(request.session_id)
            size = page_size(request.page_size, 100)
            rows, token = await queries.list_turns(
                self.store.db.pool, str(row["id"]), size, request.page_token
            )
            return sessions_pb2.ListTurnsResponse(
                turns=[turn_message(r) for r in rows], next_page_token=token
            )

        return await self._guard(context, call)
