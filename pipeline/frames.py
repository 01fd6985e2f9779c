"""What flows between stages inside a session (events to clients are voiceagent.v1 protos).

Audio into the VAD stage is raw bytes in the client's format; everything after it is one of
these small records. Items of an agent turn carry the `Turn`, so a barge-in can tell which
queued work is stale.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

from pipeline.turn import SpokenSentence, Turn

END = object()  # end of input: flows through every stage, each flushes then forwards it


@dataclass(frozen=True)
class UserSpeech:
    """A VAD segment: 16 kHz mono PCM with its stream offsets."""

    audio: bytes
    start_offset_ms: int
    end_offset_ms: int
    _: KW_ONLY
    speech_end_at: float  # monotonic time the last speech window arrived
    vad_stop_at: float  # monotonic time the VAD decided speech stopped


@dataclass(frozen=True)
class UserText:
    text: str
    received_at: float


@dataclass(frozen=True)
class TurnItem:
    turn: Turn


@dataclass(frozen=True)
class TurnStart(TurnItem):
    """A committed user input; the chat stage answers it."""


@dataclass(frozen=True)
class Sentence(TurnItem):
    text: str


@dataclass(frozen=True)
class AgentAudio(TurnItem):
    """A chunk of agent speech in the session's output format."""

    audio: bytes
    sentence: SpokenSentence


@dataclass(frozen=True)
class EndOfTurn(TurnItem):
    """The reply is complete upstream; the output stage closes the turn after its audio."""
