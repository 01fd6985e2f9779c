"""One Realtime WebSocket on a live VoiceSession: its state, the sender, and the translation
of the session's events into GA server events.

The pipeline cuts speech (server VAD), transcribes it and replies; this side gives the client
the Realtime view of that: input-buffer events, user and assistant items with ids, and one
response per pipeline turn. Client events are applied by `server.realtime.handlers`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import WebSocket
from voiceagent.v1 import converse_pb2, tools_pb2

from pipeline.session import VoiceSession
from pipeline.tools.spec import Runs, ToolSpec
from pipeline.turn import Turn
from server.realtime import errors, tools
from server.realtime.config import SessionConfig
from server.realtime.formats import InputConverter, OutputConverter
from server.realtime.items import Item, Items, new_id
from server.realtime.responses import Response
from server.sessions.store import SessionRecord, SessionStore

log = logging.getLogger(__name__)


@dataclass
class Heard:
    """A VAD segment committed as a user audio item, waiting for its transcript."""

    item: Item
    start_ms: int
    end_ms: int


@dataclass
class Connection:
    websocket: WebSocket
    session: VoiceSession
    record: SessionRecord
    store: SessionStore
    config: SessionConfig
    items: Items
    limits: list[dict] = field(default_factory=list)  # rate_limits.updated's content
    responses: dict[int, Response] = field(default_factory=dict)  # by turn index
    next_response: dict = field(default_factory=dict)  # response.create's overrides
    heard: list[Heard] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)  # client tool call id -> turn index
    outputs: dict[str, str] = field(default_factory=dict)  # answered, sent on response.create
    tool_turns: set[int] = field(default_factory=set)  # turns whose response ended at calls
    turn_audio_ms: dict[int, float] = field(default_factory=dict)  # agent audio sent per turn
    speech_item_id: str = ""  # the item id announced by speech_started
    pending_user: list[str] = field(default_factory=list)  # user text since the last response
    input_buffer: bytearray = field(default_factory=bytearray)  # manual mode: uncommitted audio
    input_ms: float = 0.0  # audio received so far (the buffer's timeline)
    gone: bool = False
    on_response_done: Callable[[], None] | None = None  # the idle timer hooks in here
    on_speech: Callable[[], None] | None = None
    server_tools: tuple[ToolSpec, ...] = ()  # the server's tool sets for this session

    def __post_init__(self) -> None:
        self._lock = asyncio.Lock()
        self.converter = InputConverter(self.config.input_format)
        self.open_turn = self.session.stt.open_turn  # the pipeline's own: VAD turns reply
        vad = self.session.vad
        self.barge_in = vad.on_speech_start if vad is not None else _no_barge_in  # the pipeline's

    def new_item_id(self) -> str:
        return new_id("item")

    # -- sending ---------------------------------------------------------------------------
    async def send(self, *events: dict) -> bool:
        async with self._lock:
            for event in events:
                event = {"event_id": new_id("event"), **event}
                try:
                    await self.websocket.send_text(json.dumps(event))
                except Exception:  # the client is gone: nothing to tell it
                    self.gone = True
                    await self.session.close()
                    return False
        return True

    async def problem(self, problem: errors.Problem, client_event_id: str | None = None) -> None:
        await self.send(errors.event(problem, new_id("event"), client_event_id))

    @property
    def active(self) -> Response | None:
        return next(iter(self.responses.values()), None)

    def owns(self, item: Item) -> Response | None:
        """The in-progress response that `item` is part of, if any."""
        return next((r for r in self.responses.values() if item in r.output), None)

    # -- the session's events ---------------------------------------------------------------
    async def pump(self) -> None:
        """Translate the session's events until its stream ends."""
        async for event in self.session.events:
            kind = event.WhichOneof("event")
            out = await self.translate(kind, getattr(event, kind))
            if out and not await self.send(*out):
                return

    async def translate(self, kind: str, body) -> list[dict]:  # noqa: ANN001 (a proto message)
        if kind == "speech_started":
            if self.on_speech is not None:
                self.on_speech()
            self.speech_item_id = new_id("item")
            return [{"type": "input_audio_buffer.speech_started",
                     "audio_start_ms": body.offset_ms, "item_id": self.speech_item_id}]  # fmt: skip
        if kind == "speech_stopped":
            return self.speech_stopped(body.start_offset_ms, body.end_offset_ms)
        if kind == "transcript":
            return self.transcribed(
                body.text, body.start_offset_ms, body.end_offset_ms, body.turn_index
            )
        if kind == "agent_text_delta":
            response, out = self.response_for(body.turn_index)
            return self.sync(response, out + response.text_delta(body.text))
        if kind == "agent_audio":
            response, out = self.response_for(body.turn_index)
            sent = body.offset_ms + len(body.audio) / 48  # 24 kHz int16: 48 bytes a millisecond
            self.turn_audio_ms[body.turn_index] = sent
            return self.sync(response, out + response.audio_delta(body.audio, sent))
        if kind == "tool_call":
            return self.tool_call(body)
        if kind == "interrupted":
            cut = self.responses.get(body.turn_index)
            if cut is not None and not cut.cancel_reason:
                cut.cancel_reason = "turn_detected"
            return []
        if kind == "turn_completed":
            return self.completed(body)
        if kind == "error":
            failed = self.responses.get(body.turn_index) if body.turn_index else None
            if failed is not None:
                failed.failed = body.message
            return [errors.event(errors.from_pipeline_error(body.code, body.message),
                                 new_id("event"), None)]  # fmt: skip
        return []  # state changes, session expiry: no Realtime counterpart

    def speech_stopped(self, start_ms: int, end_ms: int) -> list[dict]:
        item = Item(self.speech_item_id or new_id("item"), "message", "user", "audio")
        self.speech_item_id = ""
        previous = self.items.order[-1].id if self.items.order else None
        self.items.add(item)
        self.heard.append(Heard(item, start_ms, end_ms))
        return [
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": end_ms,
                "item_id": item.id,
            },
            {
                "type": "input_audio_buffer.committed",
                "item_id": item.id,
                "previous_item_id": previous,
            },
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item.wire()},
        ]

    def transcribed(self, text: str, start_ms: int, end_ms: int, turn_index: int) -> list[dict]:
        """A VAD segment's transcript: its item completes; with a turn, a response starts."""
        match = next((h for h in self.heard if (h.start_ms, h.end_ms) == (start_ms, end_ms)), None)
        out: list[dict] = []
        while self.heard:  # earlier segments with no transcript (noise) complete empty
            heard = self.heard.pop(0)
            if heard is match:
                break
            out += self.user_transcript(heard.item, "", from_pipeline=False)
        if match is None:
            return out
        out += self.user_transcript(match.item, text, from_pipeline=turn_index > 0)
        if turn_index > 0:  # the pipeline answers; it sees any held user items too
            self.pending_user.clear()
            _, started = self.response_for(turn_index)
            out += started
        return out

    def user_transcript(self, item: Item, text: str, *, from_pipeline: bool) -> list[dict]:
        item.text = text
        if text.strip():
            if from_pipeline:  # the pipeline's turn put it in history
                self.items.adopt(item, "user", text)
            else:  # held for response.create (create_response false / manual)
                self.items.remember(item, "user", text)
                self.pending_user.append(text)
        out = []
        if self.config.transcription is not None:
            out.append({"type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item.id, "content_index": 0, "transcript": text,
                        "usage": {"type": "duration", "seconds": 0.0}})  # fmt: skip
        out.append({"type": "conversation.item.done", "previous_item_id": self.items.previous_id(item),
                    "item": item.wire()})  # fmt: skip
        return out

    # -- responses ----------------------------------------------------------------------------
    def response_for(self, turn_index: int) -> tuple[Response, list[dict]]:
        """The response for a pipeline turn, and its start events the first time it is seen."""
        response = self.responses.get(turn_index)
        if response is not None:
            return response, []
        overrides, self.next_response = self.next_response, {}
        modalities = overrides.get("output_modalities", self.config.output_modalities)
        fmt = overrides.get("output_format", self.config.output_format)
        response = Response(
            turn_index,
            tuple(modalities),
            OutputConverter(fmt),
            previous_item_id=self.items.order[-1].id if self.items.order else None,
            audio_offset_ms=self.turn_audio_ms.get(turn_index, 0.0),
            restore=overrides.get("restore", {}),
        )
        live = self.session.conversation.live
        response.turn = live if live is not None and live.index == turn_index else None
        self.responses[turn_index] = response
        return response, response.started()

    def sync(self, response: Response, out: list[dict]) -> list[dict]:
        """The response's new output items join the conversation's items."""
        for item in response.output:
            if item not in self.items.order:
                item.turn = response.turn
                self.items.add(item)
        return out

    def tool_call(self, body: tools_pb2.ToolCall) -> list[dict]:
        """The model called a client tool: a function_call item; once the step's calls are all
        out, the response is done and the client answers (function_call_output, then
        response.create). Server-run tools (webhooks, built-ins) stay inside the reply."""
        if body.runner != tools_pb2.TOOL_RUNNER_CLIENT:
            return []
        response, out = self.response_for(body.turn_index)
        out += response.function_call(body.call_id, body.name, body.arguments_json)
        self.sync(response, out)
        self.waiting[body.call_id] = body.turn_index
        turn = response.turn
        expected = 1
        if turn is not None and turn.steps:
            expected = sum(1 for c in turn.steps[-1].calls if c.spec and c.spec.runs == Runs.CLIENT)
        if response.calls >= expected:
            del self.responses[body.turn_index]
            self.tool_turns.add(body.turn_index)
            out += self.finish(response)
        return out

    def finish(self, response: Response) -> list[dict]:
        for name, value in response.restore.items():
            setattr_path(self.session, name, value)
        words = sum(len(m.content.split()) for m in self.session.conversation.messages())
        out = response.finished(words)
        if self.limits:
            out.append({"type": "rate_limits.updated", "rate_limits": self.limits})
        if self.on_response_done is not None and not self.responses:
            self.on_response_done()
        return out

    def completed(self, done: converse_pb2.TurnCompleted) -> list[dict]:
        self.turn_audio_ms.pop(done.turn_index, None)
        if done.turn_index not in self.responses and done.turn_index in self.tool_turns:
            self.tool_turns.discard(done.turn_index)
            return []  # ended while the client held its tool calls: nothing more to say
        self.tool_turns.discard(done.turn_index)
        response, out = self.response_for(done.turn_index)
        del self.responses[done.turn_index]
        out += self.finish(response)
        item = response.message
        if item is not None:
            for text in (done.agent_text, response.transcript.strip()):
                if text and item.message is None:
                    self.items.adopt(item, "assistant", text)
            if item.truncate_ms is not None:  # truncated before its turn closed here
                self.items.truncate(item, item.truncate_ms)
        return out

    async def start_response(self, overrides: dict) -> None:
        """A reply now, to the conversation as it stands (what response.create asks for); with
        function call outputs given, the reply that called them goes on instead."""
        continued = tools.answered_turn(self)
        if continued is not None:
            self.next_response = overrides
            response, started = self.response_for(continued)
            await self.send(*started)
            await tools.submit(self)
            return
        user_text = " ".join(self.pending_user)
        self.pending_user.clear()
        self.next_response = overrides
        turn: Turn = await self.session.respond()
        turn.user_text = user_text  # its stored turn keeps what it answers (history has it)
        response, started = self.response_for(turn.index)
        response.turn = turn
        await self.send(*started)


async def _no_barge_in() -> None:
    return None


def setattr_path(root: object, path: str, value: object) -> None:
    """Set `a.b.c` on `root` (per-response overrides of the session's chat stage)."""
    *parents, name = path.split(".")
    for part in parents:
        root = getattr(root, part)
    setattr(root, name, value)
