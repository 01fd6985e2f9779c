"""voiceagent.v1.SessionService: stored sessions and transcripts over gRPC.

The reads are the core's `SessionReads` (the same ones REST /sessions uses); EndSession is the
opener's hang-up, so a live stream on the session ends on whatever edge it runs.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from voiceagent.v1 import converse_pb2, sessions_pb2, tools_pb2
from voiceagent.v1 import sessions_pb2_grpc as pb_grpc

from pipeline.events import OUTCOMES
from pipeline.tools.lifecycle import Outcome
from server.auth.caller import CONVERSE, READ, Caller
from server.grpc.auth import current_caller
from server.grpc.status import abort
from server.sessions import checks, ids
from server.sessions.errors import Kind, RequestError
from server.sessions.opener import SessionOpener
from server.sessions.reads import MAX_PAGE, SessionReads, database_errors


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
        state=converse_pb2.ConversationState.Value(f"CONVERSATION_STATE_{row['state'].upper()}"),  # type: ignore[arg-type]  # protoc .pyi: Value() is an int, the field wants the enum class
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
        tool_calls=[
            tools_pb2.ToolCallRecord(
                call_id=c["call_id"],
                name=c["name"],
                arguments_json=c["arguments"],
                outcome=OUTCOMES[Outcome(c["outcome"])],
                output=c["output"],
                error=c["error"],
                reason=c["reason"],
                duration_ms=c["duration_ms"],
            )
            for c in row.get("tool_calls", ())
        ],
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
        raise RequestError(f"page_size must be between 0 and {MAX_PAGE}, got {value}")
    return min(value or default, MAX_PAGE)


class SessionService(pb_grpc.SessionServiceServicer):
    def __init__(self, opener: SessionOpener, reads: SessionReads) -> None:
        self.opener, self.reads = opener, reads

    async def _guard(self, context, call):
        """Bad input, refusals and database outages end the call with a status and message."""
        try:
            return await call(current_caller())
        except RequestError as exc:
            await abort(context, exc)

    async def CreateSession(self, request, context):
        async def call(caller: Caller):
            checks.bounded_text(request.customer_id, "customer_id", checks.MAX_NAME_CHARS)
            checks.bounded_text(request.voice, "voice", checks.MAX_NAME_CHARS)
            checks.bounded_text(request.instructions, "instructions", checks.MAX_INSTRUCTIONS_CHARS)
            with database_errors():
                record = await self.opener.create(
                    caller, request.customer_id, request.instructions, request.voice
                )
            row = await self.reads.session(caller.tenant_id, record.id)
            return sessions_pb2.CreateSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def GetSession(self, request, context):
        async def call(caller: Caller):
            sid = ids.strict(request.session_id)
            caller.require(READ, sid)
            row = await self.reads.session(caller.tenant_id, sid)
            return sessions_pb2.GetSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def ListSessions(self, request, context):
        async def call(caller: Caller):
            caller.require(READ, caller.session_id)
            checks.bounded_text(request.customer_id, "customer_id", checks.MAX_NAME_CHARS)
            size = page_size(request.page_size, 50)
            rows, token = await self.reads.sessions(
                caller.tenant_id, request.customer_id, size, request.page_token
            )
            shown = [r for r in rows if caller.may_see(str(r["id"]))]
            return sessions_pb2.ListSessionsResponse(
                sessions=[session_message(r) for r in shown], next_page_token=token
            )

        return await self._guard(context, call)

    async def EndSession(self, request, context):
        async def call(caller: Caller):
            checks.bounded_text(request.reason, "reason", checks.MAX_NAME_CHARS)
            sid = ids.strict(request.session_id)
            caller.require(CONVERSE, sid)
            with database_errors():
                record = await self.opener.store.get(sid, caller.tenant_id)
            if record is None:
                raise RequestError(f"session {request.session_id} not found", Kind.NOT_FOUND)
            await self.opener.hang_up(record, request.reason)
            row = await self.reads.session(caller.tenant_id, record.id)
            return sessions_pb2.EndSessionResponse(session=session_message(row))

        return await self._guard(context, call)

    async def ListTurns(self, request, context):
        async def call(caller: Caller):
            sid = ids.strict(request.session_id)
            caller.require(READ, sid)
            size = page_size(request.page_size, 100)
            rows, token = await self.reads.turns(caller.tenant_id, sid, size, request.page_token)
            return sessions_pb2.ListTurnsResponse(
                turns=[turn_message(r) for r in rows], next_page_token=token
            )

        return await self._guard(context, call)
