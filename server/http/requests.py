"""What a REST request or a WebSocket asks of the session core, as a SessionRequest.

REST turns and WebSockets open sessions the way Converse does (same opener, same registry,
same end policy); only their fixed formats differ: the pipeline's 16 kHz mono PCM in, 24 kHz
mono PCM out (encoded to files by audio_codec), and for REST no real-time pacing.
"""

from __future__ import annotations

from pipeline.audio import PIPELINE_RATE, PcmFormat
from server.auth.caller import Caller
from server.sessions.opener import SessionRequest

OUTPUT_RATE = 24_000  # agent audio inside the pipeline; files are encoded from it
NO_PACING_MS = 1e9  # REST: the whole reply at once, nobody is listening in real time
PIPELINE_INPUT = PcmFormat(PIPELINE_RATE, 1)
OUTPUT = PcmFormat(OUTPUT_RATE, 1)


def turn_request(caller: Caller, session_id: str, speak: bool) -> SessionRequest:
    """One REST turn on a stored session: text or a whole utterance in, the reply at once."""
    return SessionRequest(
        edge="rest",
        caller=caller,
        session_id=session_id,
        output_format=OUTPUT,
        output_lead_ms=NO_PACING_MS,
        speak=speak,
    )


def socket_request(
    caller: Caller,
    session_id: str,
    customer_id: str,
    stream_audio: bool,
    lead_ms: float,
    record: bool = False,
) -> SessionRequest:
    """A WebSocket on a client-chosen id, created on first use; pcm16 streams through the VAD.
    Streamed agent audio is paced (`lead_ms`); otherwise it is collected into one file."""
    return SessionRequest(
        edge="websocket",
        caller=caller,
        session_id=session_id,
        create_missing=True,
        customer_id=customer_id,
        input_format=PIPELINE_INPUT,
        output_format=OUTPUT,
        output_lead_ms=lead_ms if stream_audio else NO_PACING_MS,
        record=record,
    )
