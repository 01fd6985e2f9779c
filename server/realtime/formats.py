"""The Realtime audio formats and their conversion to and from the pipeline's PCM.

`audio/pcm` is 16-bit little-endian mono at 24 kHz; `audio/pcmu` and `audio/pcma` are G.711 at
8 kHz. Input goes to the pipeline's 16 kHz mono, output comes from its 24 kHz mono; a
converter keeps its resampler's state between chunks, so chunk edges leave no clicks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.audio import PIPELINE_RATE, PcmFormat, StreamResampler
from server.realtime import g711

OUTPUT_RATE = 24_000  # the pipeline's agent audio, and audio/pcm's only rate


@dataclass(frozen=True)
class AudioFormat:
    type: str  # "audio/pcm" | "audio/pcmu" | "audio/pcma"
    rate: int

    @property
    def sample_bytes(self) -> int:
        return 2 if self.type == "audio/pcm" else 1

    def wire(self) -> dict:
        return (
            {"type": self.type, "rate": self.rate}
            if self.type == "audio/pcm"
            else {"type": self.type}
        )

    def duration_ms(self, nbytes: int) -> float:
        return nbytes / self.sample_bytes / self.rate * 1000.0


PCM = AudioFormat("audio/pcm", 24_000)
PCMU = AudioFormat("audio/pcmu", 8_000)
PCMA = AudioFormat("audio/pcma", 8_000)
FORMATS = {f.type: f for f in (PCM, PCMU, PCMA)}

_DECODE: dict[str, Callable[[bytes], bytes]] = {
    "audio/pcmu": g711.ulaw_to_pcm,
    "audio/pcma": g711.alaw_to_pcm,
}
_ENCODE: dict[str, Callable[[bytes], bytes]] = {
    "audio/pcmu": g711.pcm_to_ulaw,
    "audio/pcma": g711.pcm_to_alaw,
}


def parse_format(value: object, param: str) -> AudioFormat:
    """A `{"type": ..., "rate": ...}` object -> an AudioFormat, or ValueError naming `param`."""
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError(f"{param} must be an object with a type: {', '.join(FORMATS)}")
    fmt = FORMATS.get(value["type"])
    if fmt is None:
        raise ValueError(
            f"{param}.type {str(value['type'])[:40]!r} is not one of {', '.join(FORMATS)}"
        )
    extra = set(value) - {"type", "rate"}
    if extra:
        raise ValueError(f"unknown field {param}.{sorted(extra)[0]}")
    if "rate" in value and (fmt is not PCM or value["rate"] != PCM.rate):
        raise ValueError(f"{param}.rate: audio/pcm is 24000 Hz only (G.711 has no rate field)")
    return fmt


class InputConverter:
    """Client audio in `fmt` -> 16 kHz mono PCM for the VAD and speech-to-text."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._resampler = StreamResampler(PcmFormat(fmt.rate, 1), PIPELINE_RATE)

    def to_pipeline(self, data: bytes) -> bytes:
        decode = _DECODE.get(self.fmt.type)
        pcm = decode(data) if decode is not None else data[: len(data) // 2 * 2]
        return self._resampler.process(pcm)


class OutputConverter:
    """The pipeline's 24 kHz mono agent audio -> `fmt` for the client."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._resampler = StreamResampler(PcmFormat(OUTPUT_RATE, 1), fmt.rate)

    def from_pipeline(self, pcm: bytes) -> bytes:
        out = self._resampler.process(pcm)
        encode = _ENCODE.get(self.fmt.type)
        return encode(out) if encode is not None else out


def pcm16k_ms(nbytes: int) -> int:
    return round(nbytes / 2 / PIPELINE_RATE * 1000)


def whole_to_pipeline(fmt: AudioFormat, data: bytes) -> bytes:
    """A whole committed buffer in `fmt` -> 16 kHz mono PCM, the resampler drained."""
    converter = InputConverter(fmt)
    return converter.to_pipeline(data) + converter._resampler.flush()
