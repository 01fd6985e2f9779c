"""The session's outbound event stream, built from the voiceagent.v1 messages.

The proto is the one definition of event names and fields; the gRPC service sends these
messages as they are, and the HTTP/WebSocket and WebRTC edges render the same messages as JSON.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from voiceagent.v1 import audio_pb2, converse_pb2, tools_pb2

from pipeline.tools.lifecycle import Outcome, ToolCall
from pipeline.tools.spec import Runs
from pipeline.turn import State, Turn

ERROR_CODES = {
    "provider_failed": converse_pb2.ERROR_CODE_PROVIDER_FAILED,
    "provider_not_configured": converse_pb2.ERROR_CODE_PROVIDER_NOT_CONFIGURED,
    "resource_exhausted": converse_pb2.ERROR_CODE_RESOURCE_EXHAUSTED,
    "invalid_request": converse_pb2.ERROR_CODE_INVALID_REQUEST,
    "dead_air": converse_pb2.ERROR_CODE_DEAD_AIR,
    "invalid_tool_result": converse_pb2.ERROR_CODE_INVALID_TOOL_RESULT,
}
RUNNERS = {
    Runs.CLIENT: tools_pb2.TOOL_RUNNER_CLIENT,
    Runs.WEBHOOK: tools_pb2.TOOL_RUNNER_WEBHOOK,
    Runs.BUILTIN: tools_pb2.TOOL_RUNNER_BUILTIN,
}
OUTCOMES = {
    Outcome.COMPLETED: tools_pb2.TOOL_OUTCOME_COMPLETED,
    Outcome.FAILED: tools_pb2.TOOL_OUTCOME_FAILED,
    Outcome.TIMED_OUT: tools_pb2.TOOL_OUTCOME_TIMED_OUT,
    Outcome.CANCELLED: tools_pb2.TOOL_OUTCOME_CANCELLED,
}
OUTCOME_NAMES = {number: outcome.value for outcome, number in OUTCOMES.items()}

Event = converse_pb2.ConverseResponse

# State mirrors ConversationState number for number; this is where one becomes the other.
_PROTO_STATES: dict[State, converse_pb2.ConversationState] = {
    State.STARTED: converse_pb2.CONVERSATION_STATE_STARTED,
    State.LISTENING: converse_pb2.CONVERSATION_STATE_LISTENING,
    State.THINKING: converse_pb2.CONVERSATION_STATE_THINKING,
    State.SPEAKING: converse_pb2.CONVERSATION_STATE_SPEAKING,
    State.ENDED: converse_pb2.CONVERSATION_STATE_ENDED,
    State.DISCONNECTED: converse_pb2.CONVERSATION_STATE_DISCONNECTED,
}


def _state_changed(state: State) -> Event:
    return Event(state_changed=converse_pb2.StateChanged(state=_PROTO_STATES[state]))


class EventSink:
    """A bounded queue of events for one client; `None` marks the end of the stream.

    An edge reads it as `async for event in session.events`: the loop ends with the stream.
    """

    def __init__(self, maxsize: int = 512) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.state = State.STARTED
        self.on_state: Callable[[State], None] | None = None  # persistence hooks in here
        # Observers tap in here (metrics, a recording); each keeps and calls the one before it.
        self.on_event: Callable[[Event], None] | None = None
        self._drained = False
        self.last_event_at = time.monotonic()  # agent activity, for idle detection

    def __aiter__(self) -> EventSink:
        return self

    async def __anext__(self) -> Event:
        if not self._drained:
            event = await self.queue.get()
            if event is not None:
                return event
            self._drained = True
        raise StopAsyncIteration

    async def emit(self, event: Event) -> None:
        self.last_event_at = time.monotonic()
        if self.on_event is not None:
            self.on_event(event)
        await self.queue.put(event)

    def offer(self, event: Event) -> bool:
        """Emit without waiting (from code being cancelled): False, and dropped, if full."""
        if self.queue.full():
            return False
        self.last_event_at = time.monotonic()
        if self.on_event is not None:
            self.on_event(event)
        self.queue.put_nowait(event)
        return True

    async def finish(self, state: State) -> None:
        """Final state and end of stream after a normal ending: nothing is dropped, so a slow
        reader still gets every event (if it is gone, the session is cancelled meanwhile)."""
        self.state = state
        await self.queue.put(_state_changed(state))
        await self.queue.put(None)

    def end(self, state: State) -> None:
        """Final state and end of stream, without waiting: the reader may already be gone."""
        for item in (_state_changed(state), None):
            while self.queue.full():
                self.queue.get_nowait()  # a reader that is gone won't miss old events
            self.queue.put_nowait(item)
        self.state = state

    async def set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if self.on_state is not None:
                self.on_state(state)
            await self.emit(_state_changed(state))

    async def session_expiring(self, seconds_left: int) -> None:
        await self.emit(
            Event(session_expiring=converse_pb2.SessionExpiring(seconds_left=seconds_left))
        )

    async def speech_started(self, offset_ms: int) -> None:
        await self.emit(Event(speech_started=audio_pb2.SpeechStarted(offset_ms=offset_ms)))

    async def speech_stopped(self, start_ms: int, end_ms: int) -> None:
        await self.emit(
            Event(
                speech_stopped=audio_pb2.SpeechStopped(
                    start_offset_ms=start_ms, end_offset_ms=end_ms
                )
            )
        )

    async def transcript(self, text: str, start_ms: int, end_ms: int, turn_index: int) -> None:
        await self.emit(
            Event(
                transcript=audio_pb2.Transcript(
                    text=text,
                    is_final=True,
                    start_offset_ms=start_ms,
                    end_offset_ms=end_ms,
                    turn_index=turn_index,
                )
            )
        )

    async def error(self, code: str, message: str, turn_index: int = 0) -> None:
        await self.emit(
            Event(
                error=converse_pb2.Error(
                    code=ERROR_CODES.get(code, converse_pb2.ERROR_CODE_UNSPECIFIED),
                    message=message,
                    turn_index=turn_index,
                )
            )
        )

    async def text_delta(self, turn: Turn, text: str) -> None:
        await self.emit(
            Event(agent_text_delta=converse_pb2.AgentTextDelta(turn_index=turn.index, text=text))
        )

    async def audio(self, turn: Turn, audio: bytes, offset_ms: float) -> None:
        await self.emit(
            Event(
                agent_audio=converse_pb2.AgentAudio(
                    turn_index=turn.index, audio=audio, offset_ms=round(offset_ms)
                )
            )
        )

    async def interrupted(self, turn: Turn, spoken_text: str) -> None:
        await self.emit(
            Event(
                interrupted=converse_pb2.Interrupted(
                    turn_index=turn.index,
                    spoken_text=spoken_text,
                    audio_sent_ms=round(turn.audio_sent_ms),
                )
            )
        )

    async def turn_completed(self, turn: Turn, agent_text: str) -> None:
        await self.emit(
            Event(
                turn_completed=converse_pb2.TurnCompleted(
                    turn_index=turn.index,
                    user_text=turn.user_text,
                    agent_text=agent_text,
                    interrupted=turn.interrupted,
                    latency=converse_pb2.TurnLatency(**turn.latency_ms()),
                    agent_audio_ms=round(turn.audio_sent_ms),
                )
            )
        )

    async def tool_call(self, call: ToolCall) -> None:
        runner = RUNNERS[call.spec.runs] if call.spec else tools_pb2.TOOL_RUNNER_UNSPECIFIED
        await self.emit(
            Event(
                tool_call=tools_pb2.ToolCall(
                    call_id=call.call_id,
                    name=call.name,
                    arguments_json=call.arguments,
                    turn_index=call.turn_index,
                    runner=runner,
                )
            )
        )

    async def tool_call_done(self, call: ToolCall) -> None:
        await self.emit(tool_call_done(call))


def tool_call_done(call: ToolCall) -> Event:
    assert call.outcome is not None
    return Event(
        tool_call_done=tools_pb2.ToolCallDone(
            call_id=call.call_id,
            name=call.name,
            turn_index=call.turn_index,
            outcome=OUTCOMES[call.outcome],
            output=call.output,
            error=call.error,
            reason=call.reason,
            duration_ms=call.duration_ms if call.ran else -1,
        )
    )
