"""Checks on client requests, with messages a person can act on.

Each failure carries the gRPC status it maps to, so the service ends the stream with a
precise code instead of a generic error.
"""

from __future__ import annotations

import uuid

import grpc
from pydantic import ValidationError
from voiceagent.v1 import audio_pb2

from pipeline.audio import INPUT_RATES, OUTPUT_RATES, PcmFormat
from pipeline.vad import VadParams
from server.config import Settings

MAX_AUDIO_CHUNK_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4_000
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_NAME_CHARS = 200
DEFAULT_OUTPUT = PcmFormat(24_000, 1)


class InvalidRequest(Exception):
    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message)
        self.code = code


def _rates(rates: tuple[int, ...]) -> str:
    return ", ".join(str(r) for r in rates)


def input_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.encoding != audio_pb2.AUDIO_ENCODING_LINEAR16:
        raise InvalidRequest(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16 (16-bit PCM)")
    if fmt.sample_rate_hz not in INPUT_RATES:
        raise InvalidRequest(
            f"{field}.sample_rate_hz {fmt.sample_rate_hz} is not supported; "
            f"use one of {_rates(INPUT_RATES)}"
        )
    if fmt.channels not in (1, 2):
        raise InvalidRequest(f"{field}.channels must be 1 or 2, got {fmt.channels}")
    return PcmFormat(fmt.sample_rate_hz, fmt.channels)


def output_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.ByteSize() == 0:
        return DEFAULT_OUTPUT
    if fmt.encoding not in (
        audio_pb2.AUDIO_ENCODING_UNSPECIFIED,
        audio_pb2.AUDIO_ENCODING_LINEAR16,
    ):
        raise InvalidRequest(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16")
    rate = fmt.sample_rate_hz or DEFAULT_OUTPUT.sample_rate
    if rate not in OUTPUT_RATES:
        raise InvalidRequest(
            f"{field}.sample_rate_hz {rate} is not supported; use one of {_rates(OUTPUT_RATES)}"
        )
    if fmt.channels not in (0, 1):
        raise InvalidRequest(f"{field}.channels must be 1: agent audio is mono")
    return PcmFormat(rate, 1)


def vad_params(vad: audio_pb2.VadConfig, settings: Settings) -> VadParams:
    try:
        return VadParams(
            threshold=vad.threshold or settings.vad_threshold,
            start_ms=vad.start_ms or settings.vad_start_ms,
            stop_ms=vad.stop_ms or settings.vad_stop_ms,
            pre_roll_ms=vad.pre_roll_ms or settings.vad_pre_roll_ms,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"vad.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRequest(f"invalid VAD settings: {problems}") from None


def session_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(f"session_id {value[:64]!r} is not a UUID") from None


def bounded_text(value: str, field: str, limit: int, required: bool = False) -> str:
    if "\x00" in value:
        raise InvalidRequest(f"{field} contains a NUL character")
    if len(value) > limit:
        raise InvalidRequest(
            f"{field} is {len(value)} characters; the limit is {limit}",
            grpc.StatusCode.OUT_OF_RANGE,
        )
    if required and not value.strip():
        raise InvalidRequest(f"{field} is empty")
    return value


def audio_chunk(data: bytes, fmt: PcmFormat | None) -> bytes:
    if fmt is None:
        raise InvalidRequest(
            "audio received but the session has no input format: "
            "set config.input_format in the first request"
        )
    if len(data) > MAX_AUDIO_CHUNK_BYTES:
        raise InvalidRequest(
            f"audio chunk of {len(data)} bytes is over the {MAX_AUDIO_CHUNK_BYTES}-byte limit; "
            "send smaller chunks (20-100 ms is typical)",
            grpc.StatusCode.OUT_OF_RANGE,
        )
    if len(data) % fmt.frame_bytes:
        raise InvalidRequest(
            f"audio chunk of {len(data)} bytes is not a whole number of samples "
            f"({fmt.frame_bytes} bytes per sample frame for 16-bit, {fmt.channels} channel(s))"
        )
    return data
