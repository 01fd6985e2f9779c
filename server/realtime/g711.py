"""G.711 μ-law and A-law (the `audio/pcmu` and `audio/pcma` Realtime formats), as tables.

Decoding is the standard expansion (ITU-T G.711, as in the Sun reference code); encoding looks
each 16-bit sample up in a 64 Ki table built once from the decoder: the nearest level's code.
Plain numpy, no state, so it is safe to call from any thread.
"""

from __future__ import annotations

import numpy as np


def _ulaw_levels() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_levels() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment, quant = (code & 0x70) >> 4, (code & 0x0F) << 4
    magnitude = np.where(segment == 0, quant + 8, (quant + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _encoder(levels: np.ndarray) -> np.ndarray:
    """For every int16 value (offset by 32768), the code of the nearest level."""
    order = np.argsort(levels, kind="stable")
    sorted_levels = levels[order].astype(np.int32)
    values = np.arange(-32768, 32768, dtype=np.int32)
    right = np.clip(np.searchsorted(sorted_levels, values), 1, len(sorted_levels) - 1)
    left = right - 1
    nearer_left = (values - sorted_levels[left]) <= (sorted_levels[right] - values)
    return order[np.where(nearer_left, left, right)].astype(np.uint8)


ULAW_DECODE = _ulaw_levels()
ALAW_DECODE = _alaw_levels()
_ULAW_ENCODE = _encoder(ULAW_DECODE)
_ALAW_ENCODE = _encoder(ALAW_DECODE)
_ULAW_ENCODE[32768] = 0xFF  # μ-law has two zeros; silence encodes as +0, as G.711 coders do


def ulaw_to_pcm(data: bytes) -> bytes:
    return ULAW_DECODE[np.frombuffer(data, np.uint8)].astype("<i2").tobytes()


def alaw_to_pcm(data: bytes) -> bytes:
    return ALAW_DECODE[np.frombuffer(data, np.uint8)].astype("<i2").tobytes()


def pcm_to_ulaw(pcm: bytes) -> bytes:
    return _ULAW_ENCODE[np.frombuffer(pcm, "<i2").astype(np.int32) + 32768].tobytes()


def pcm_to_alaw(pcm: bytes) -> bytes:
    return _ALAW_ENCODE[np.frombuffer(pcm, "<i2").astype(np.int32) + 32768].tobytes()
