"""Turn bookkeeping as plain objects: latencies, what was actually spoken, conversation state.

Barge-in must keep in history only what the user heard. The TTS stage records how much audio
each sentence produced; the output stage records how much audio it sent; `Turn.spoken_text`
maps the second onto the first.
"""

from __future__ import annotations

import enum
import time
from dataclasses import KW_ONLY, dataclass, field

from pipeline.tools.lifecycle import ToolCall


class State(enum.IntEnum):
    """Mirrors voiceagent.v1.ConversationState (same numbers)."""

    STARTED = 1
    LISTENING = 2
    THINKING = 3
    SPEAKING = 4
    ENDED = 5
    DISCONNECTED = 6


@dataclass
class SpokenSentence:
    text: str
    start_ms: float  # position in the turn's audio
    audio_ms: float = 0.0
    _: KW_ONLY
    complete: bool = False  # TTS finished this sentence


@dataclass
class ToolStep:
    """The model stopped to call tools after `text_end` characters of the reply."""

    text_end: int
    calls: list[ToolCall]


def _ms(start: float | None, end: float | None) -> int:
    if start is None or end is None:
        return -1
    return max(0, round((end - start) * 1000))


@dataclass
class Turn:
    """One user input and the agent's reply to it; times are time.monotonic() seconds."""

    index: int
    user_text: str
    speech_end_at: float  # last speech window received (or text received)
    _: KW_ONLY
    start_offset_ms: int | None = None  # of the user's speech in the input stream
    end_offset_ms: int | None = None
    vad_stop_at: float | None = None
    transcript_at: float | None = None
    llm_request_at: float | None = None
    llm_first_token_at: float | None = None
    llm_done_at: float | None = None  # the reply stream ended (not set if it was cut)
    llm_pieces: int = 0  # streamed text deltas (about one per generated token)
    tts_request_at: float | None = None
    tts_first_byte_at: float | None = None
    tts_done_at: float | None = None  # the last sentence so far finished synthesizing
    first_audio_at: float | None = None
    agent_text: str = ""  # everything the LLM produced
    sentences: list[SpokenSentence] = field(default_factory=list)
    audio_sent_ms: float = 0.0
    steps: list[ToolStep] = field(default_factory=list)  # tool calls, in the reply's order
    interrupted: bool = False
    failed: bool = False
    closed: bool = False  # completion reported; history updated

    @property
    def audio_generated_ms(self) -> float:
        return sum(s.audio_ms for s in self.sentences)

    def add_sentence(self, text: str) -> SpokenSentence:
        sentence = SpokenSentence(text=text, start_ms=self.audio_generated_ms)
        self.sentences.append(sentence)
        return sentence

    def spoken_text(self) -> str:
        """The reply text whose audio was sent: whole sentences, then a word-proportional part
        of the sentence that was cut (estimated from its audio length)."""
        if not self.interrupted:
            return self.agent_text.strip()
        parts = []
        for s in self.sentences:
            sent = self.audio_sent_ms - s.start_ms
            if sent <= 0 or s.audio_ms <= 0:
                break
            if sent >= s.audio_ms and s.complete:
                parts.append(s.text)
                continue
            words = s.text.split()
            share = min(1.0, sent / s.audio_ms)
            parts.append(" ".join(words[: int(len(words) * share)]))
            break
        return " ".join(p for p in parts if p).strip()

    def latency_ms(self) -> dict[str, int]:
        return {
            "vad_stop_to_transcript_ms": _ms(self.vad_stop_at, self.transcript_at),
            "llm_first_token_ms": _ms(self.llm_request_at, self.llm_first_token_at),
            "tts_first_byte_ms": _ms(self.tts_request_at, self.tts_first_byte_at),
            "end_of_speech_to_first_audio_ms": _ms(self.speech_end_at, self.first_audio_at),
        }


def now() -> float:
    return time.monotonic()
