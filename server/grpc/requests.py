"""Protos in, the core's plain values out: the gRPC edge's decoding, done once per message.

Only what is proto-specific is checked here (the encoding enum, which oneof is set); the
values themselves are checked by the core's `checks`, the same for every edge.
"""

from __future__ import annotations

from voiceagent.v1 import audio_pb2, converse_pb2

from pipeline.audio import PcmFormat
from server.auth.caller import Caller
from server.config import Settings
from server.sessions import checks, ids
from server.sessions.errors import RequestError
from server.sessions.opener import SessionRequest

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


def input_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.encoding != LINEAR16:
        raise RequestError(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16 (16-bit PCM)")
    return checks.input_format(fmt.sample_rate_hz, fmt.channels, field)


def output_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.ByteSize() == 0:
        return checks.DEFAULT_OUTPUT
    if fmt.encoding not in (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, LINEAR16):
        raise RequestError(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16")
    return checks.output_format(fmt.sample_rate_hz, fmt.channels, field)


def vad_params(vad: audio_pb2.VadConfig, settings: Settings):
    return checks.vad_params(
        settings,
        threshold=vad.threshold,
        start_ms=vad.start_ms,
        stop_ms=vad.stop_ms,
        pre_roll_ms=vad.pre_roll_ms,
    )


def session_request(
    config: converse_pb2.SessionConfig, settings: Settings, caller: Caller
) -> SessionRequest:
    """A Converse stream's first message -> what the opener takes."""
    has_input = config.HasField("input_format")
    return SessionRequest(
        edge="grpc",
        caller=caller,
        session_id=ids.strict(config.session_id) if config.session_id else "",
        customer_id=config.customer_id,
        instructions=config.instructions,
        voice=config.voice,
        input_format=input_format(config.input_format, "config.input_format")
        if has_input
        else None,
        output_format=output_format(config.output_format, "config.output_format"),
        vad=vad_params(config.vad, settings),
        record=config.record,
    )
