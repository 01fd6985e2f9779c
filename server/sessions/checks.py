"""Checks on what clients send, the same on every edge, with messages a person can act on.

Text is checked once here, wherever an edge decoded it from: NULs and lone UTF-16 surrogates
(valid JSON, but not text Postgres, the tokenizer or a provider can take) are refused, as are
over-long strings. Formats and VAD values are checked as plain numbers; each edge decodes its
own wire format first.
"""

from __future__ import annotations

import math

from pydantic import ValidationError

from pipeline.audio import INPUT_RATES, OUTPUT_RATES, PcmFormat
from pipeline.vad import VadParams
from server.config import Settings
from server.sessions.errors import Kind, RequestError

MAX_AUDIO_CHUNK_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4_000
MAX_INSTRUCTIONS_CHARS = 20_000
MAX_NAME_CHARS = 200
MAX_TOOL_RESULT_CHARS = 64_000
DEFAULT_OUTPUT = PcmFormat(24_000, 1)


def _rates(rates: tuple[int, ...]) -> str:
    return ", ".join(str(r) for r in rates)


def input_format(rate: int, channels: int, field: str) -> PcmFormat:
    if rate not in INPUT_RATES:
        raise RequestError(
            f"{field}.sample_rate_hz {rate} is not supported; use one of {_rates(INPUT_RATES)}"
        )
    if channels not in (1, 2):
        raise RequestError(f"{field}.channels must be 1 or 2, got {channels}")
    return PcmFormat(rate, channels)


def output_format(rate: int, channels: int, field: str) -> PcmFormat:
    """Agent audio: mono at one of OUTPUT_RATES; 0 = the default."""
    rate = rate or DEFAULT_OUTPUT.sample_rate
    if rate not in OUTPUT_RATES:
        raise RequestError(
            f"{field}.sample_rate_hz {rate} is not supported; use one of {_rates(OUTPUT_RATES)}"
        )
    if channels not in (0, 1):
        raise RequestError(f"{field}.channels must be 1: agent audio is mono")
    return PcmFormat(rate, 1)


def vad_params(
    settings: Settings,
    *,
    threshold: float = 0.0,
    start_ms: int = 0,
    stop_ms: int = 0,
    pre_roll_ms: int = 0,
) -> VadParams:
    """VAD parameters from a request; 0 means the server's default."""
    if math.isnan(threshold):
        raise RequestError("invalid VAD settings: vad.threshold is NaN; use a number in (0, 1)")
    try:
        return VadParams(
            threshold=threshold or settings.vad_threshold,
            start_ms=start_ms or settings.vad_start_ms,
            stop_ms=stop_ms or settings.vad_stop_ms,
            pre_roll_ms=pre_roll_ms or settings.vad_pre_roll_ms,
            silence_dbfs=settings.vad_silence_dbfs,
            noise_margin_db=settings.vad_noise_margin_db,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"vad.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RequestError(f"invalid VAD settings: {problems}") from None


def bounded_text(value: str, field: str, limit: int, required: bool = False) -> str:
    if "\x00" in value:
        raise RequestError(f"{field} contains a NUL character")
    if len(value) > limit:
        raise RequestError(
            f"{field} is {len(value)} characters; the limit is {limit}", Kind.TOO_LARGE
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            f"{field} is not valid text: a lone UTF-16 surrogate at character {exc.start} "
            "(send whole characters, e.g. both halves of an emoji's surrogate pair)"
        ) from None
    if required and not value.strip():
        raise RequestError(f"{field} is empty")
    return value


def audio_chunk(data: bytes, fmt: PcmFormat | None) -> bytes:
    if fmt is None:
        raise RequestError(
            "audio received but the session has no input format: "
            "set config.input_format in the first request"
        )
    if len(data) > MAX_AUDIO_CHUNK_BYTES:
        raise RequestError(
            f"audio chunk of {len(data)} bytes is over the {MAX_AUDIO_CHUNK_BYTES}-byte limit; "
            "send smaller chunks (20-100 ms is typical)",
            Kind.TOO_LARGE,
        )
    if len(data) % fmt.frame_bytes:
        raise RequestError(
            f"audio chunk of {len(data)} bytes is not a whole number of samples "
            f"({fmt.frame_bytes} bytes per sample frame for 16-bit, {fmt.channels} channel(s))"
        )
    return data
