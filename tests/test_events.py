"""The session's event stream speaks the proto's numbers for conversation states."""

from __future__ import annotations

from voiceagent.v1 import converse_pb2

from pipeline.events import EventSink
from pipeline.turn import State


def test_every_state_is_sent_as_the_same_numbered_conversation_state():
    for state in State:
        sink = EventSink()
        sink.end(state)
        event = sink.queue.get_nowait()
        assert event is not None
        assert event.state_changed.state == int(state)
        assert converse_pb2.ConversationState.Name(event.state_changed.state).endswith(state.name)
        assert sink.queue.get_nowait() is None
