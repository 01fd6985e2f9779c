"""What a client asks for when it opens a stream (`SessionRequest`, whatever edge it came in
on) and what it gets back (`OpenedSession`): the opener's input and output, kept apart from
the opener so edges can build requests without its machinery."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field

from pipeline.audio import PcmFormat
from pipeline.session import SessionOptions
from pipeline.tools.spec import ToolSpec
from pipeline.vad import VadParams
from server.auth.caller import Caller, open_access
from server.sessions import checks
from server.sessions.store import SessionRecord


@dataclass(frozen=True, kw_only=True)
class SessionRequest:
    """What a client asks for when it opens a stream, whatever edge it came in on."""

    session_id: str = ""  # a stored (canonical) id to resume; "" = a new session
    create_missing: bool = False  # resume, or create under `session_id` if it does not exist
    customer_id: str = ""
    instructions: str = ""  # "" = the session's own, or the server's default
    voice: str = ""
    input_format: PcmFormat | None = None  # None: text (and whole utterances) only
    output_format: PcmFormat = checks.DEFAULT_OUTPUT
    vad: VadParams | None = None  # None: the server's defaults
    output_lead_ms: float | None = None  # None: the server's OUTPUT_LEAD_MS
    speak: bool = True  # False: text replies only, no TTS work
    record: bool = False  # record this stream's audio (RECORD_SESSIONS records every one)
    caller: Caller = field(default_factory=open_access)  # who asks; its tenant owns the session
    edge: str = ""  # which edge opened it (grpc, rest, websocket, webrtc): metrics, logs, traces
    tools: tuple[ToolSpec, ...] = ()  # the session's own tool declarations
    tool_sets: tuple[str, ...] = ()  # server tool sets; () = the "default" set, if any
    tool_choice: str = ""  # "" = auto


@dataclass(frozen=True)
class OpenedSession:
    record: SessionRecord
    options: SessionOptions
    resumed: bool
    _: KW_ONLY
    caller: Caller = field(default_factory=open_access)
    edge: str = ""
    recording: bool = False  # the stream asked to be recorded
