"""One conversation turn for a REST request, run through a VoiceSession like any other.

The request's input (typed text or a whole recorded utterance) goes into a session resumed
from the store, input ends, and the session's events are collected until its stream closes:
the transcript, the reply text and the reply audio. The turn is recorded by the session's
own recorder, exactly as for a gRPC stream.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import HTTPException
from voiceagent.v1 import converse_pb2

from pipeline.events import OUTCOME_NAMES
from pipeline.session import VoiceSession
from pipeline.tools.spec import Runs
from server.auth.caller import Caller
from server.http import audio_codec
from server.http.errors import status_of
from server.http.requests import OUTPUT_RATE, turn_request
from server.http.schemas import Latency, TurnOut
from server.sessions.errors import RequestError, event_error_kind
from server.sessions.opener import SessionOpener
from server.sessions.tools import tools_fields

Push = Callable[[VoiceSession], Awaitable[None]]


@dataclass
class TurnOutcome:
    session_id: str
    user_text: str = ""
    agent_text: str = ""
    turn_index: int = 0
    completed: bool = False
    latency: dict = field(default_factory=dict)
    audio: bytearray = field(default_factory=bytearray)  # mono PCM at OUTPUT_RATE
    errors: list[converse_pb2.Error] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    _arguments: dict[str, str] = field(default_factory=dict)

    def collect(self, event: converse_pb2.ConverseResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "transcript":
            self.user_text = event.transcript.text
        elif kind == "agent_audio":
            self.audio += event.agent_audio.audio
        elif kind == "turn_completed":
            done = event.turn_completed
            self.completed, self.turn_index = True, done.turn_index
            self.user_text, self.agent_text = done.user_text, done.agent_text
            self.latency = {name: getattr(done.latency, name) for name in Latency.model_fields}
        elif kind == "error":
            self.errors.append(event.error)
        elif kind == "tool_call_done":
            f = event.tool_call_done
            self.tool_calls.append(
                dict(
                    call_id=f.call_id,
                    name=f.name,
                    arguments=self._arguments.get(f.call_id, ""),
                    outcome=OUTCOME_NAMES[f.outcome],
                    output=f.output,
                    error=f.error,
                    reason=f.reason,
                    duration_ms=f.duration_ms,
                )
            )
        elif kind == "tool_call":
            self._arguments[event.tool_call.call_id] = event.tool_call.arguments_json


async def run_turn(
    opener: SessionOpener,
    caller: Caller,
    session_id: str,
    push: Push,
    speak: bool = True,
    tools: dict | None = None,
) -> TurnOutcome:
    """Resume the session, feed it one input, and wait for the reply to complete. With
    `speak=False` the reply is text only: no TTS work for audio nobody will receive.
    `tools` ({"tools": [...], "tool_sets": [...]}) may not hold client tools: nobody could
    answer them."""
    request = turn_request(caller, session_id, speak)
    if tools:
        declared, sets, _ = tools_fields(tools)
        client = [s.name for s in declared if s.runs is Runs.CLIENT]
        if client:
            raise RequestError(
                f"tools: {client[0]!r} is a client tool; over REST only webhook and built-in "
                "tools can run (use a live stream: gRPC Converse, the WebSocket or WebRTC)"
            )
        request = dataclasses.replace(request, tools=declared, tool_sets=sets)
    opened = await opener.open(request)
    outcome = TurnOutcome(opened.record.id)
    async with opener.running(opened) as session:
        await push(session)
        await session.end_input()
        async for event in session.events:
            outcome.collect(event)
    if outcome.errors:
        error = outcome.errors[0]
        raise HTTPException(status_of(event_error_kind(error.code)), error.message)
    if not outcome.completed:
        raise HTTPException(422, "no speech was recognized in the audio")
    return outcome


async def turn_response(outcome: TurnOutcome, include_audio: bool, **extra) -> dict:
    """The fields of a TurnOut; the MP3 is encoded in a worker thread."""
    audio_ms = round(len(outcome.audio) / 2 / OUTPUT_RATE * 1000)
    audio_b64 = None
    if include_audio and outcome.audio:
        mp3 = await asyncio.to_thread(audio_codec.encode, bytes(outcome.audio), OUTPUT_RATE)
        audio_b64 = base64.b64encode(mp3).decode("ascii")
    return (
        TurnOut(
            session_id=outcome.session_id,
            user_input=outcome.user_text,
            agent_response=outcome.agent_text,
            state="disconnected",  # idle, no live stream: what the store records after a turn
            turn_index=outcome.turn_index,
            latency=Latency(**outcome.latency),
            audio_base64=audio_b64,
            audio_format="mp3" if audio_b64 else None,
            audio_duration_ms=audio_ms,
            tool_calls=outcome.tool_calls,
        ).model_dump()
        | extra
    )
