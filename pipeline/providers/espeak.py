"""eSpeak NG text-to-speech through ctypes, using the library and data from `espeakng-loader`.

Why ctypes instead of the `espeak-ng` binary: no subprocess per utterance, no system package,
and the wheel pins the exact library and voice data the tests were run against.

libespeak-ng keeps its state in process globals and is not thread-safe, so the library is
initialised once per process and every call into it holds `_lock`. Synthesis is blocking
(AUDIO_OUTPUT_SYNCHRONOUS): run it in a worker thread, e.g. `asyncio.to_thread`.
"""

from __future__ import annotations

import ctypes
import threading

import espeakng_loader
import numpy as np

__all__ = ["EspeakSynthesizer", "list_voices"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT; synth returns when done, audio via callback
_INITIALIZE_DONT_EXIT = 0x8000  # return an error instead of calling exit() on bad data
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_EE_OK = 0

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)*, then 0
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_sample_rate = 0
_chunks: list[bytes] | None = None  # target of the callback for the synth call in progress


def _on_audio(wav, numsamples, _events) -> int:
    if wav and numsamples > 0 and _chunks is not None:
        _chunks.append(ctypes.string_at(wav, numsamples * 2))
    return 0  # 0 = continue


# Module-level reference: libespeak keeps only the raw function pointer.
_callback = _SynthCallback(_on_audio)


def _ensure_init() -> ctypes.CDLL:
    """Load and initialise libespeak-ng once. Caller must hold `_lock`."""
    global _lib, _sample_rate
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
    lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

    data_path = espeakng_loader.get_data_path().encode()
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate}) with data path {data_path!r}")
    lib.espeak_SetSynthCallback(_callback)
    _lib, _sample_rate = lib, rate
    return lib


def _set_voice(lib: ctypes.CDLL, voice: str) -> None:
    """Select `voice` (name, file name or language code, e.g. "en-us", "en-us+f3"). Holds lock."""
    if not voice or lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
        raise ValueError(f"unknown eSpeak voice {voice!r}; see list_voices() for valid names")


def list_voices() -> list[str]:
    """Voice file names (e.g. "en-us", "fr-fr") accepted as `voice`, sorted."""
    with _lock:
        lib = _ensure_init()
        voices = lib.espeak_ListVoices(None)
        names = []
        i = 0
        while voices[i]:
            ident = voices[i].contents.identifier.decode()
            names.append(ident.rsplit("/", 1)[-1].lower())
            i += 1
    return sorted(set(names))


class EspeakSynthesizer:
    """Blocking eSpeak NG synthesizer producing int16 mono at `sample_rate` Hz.

    Instances are cheap and share one process-global engine; voice and rate are applied on
    every call, so instances with different settings don't interfere. Call `synthesize`
    from a worker thread (`asyncio.to_thread`), never directly on the event loop.
    """

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        self.voice = voice
        self.rate_wpm = rate_wpm
        with _lock:
            _set_voice(_ensure_init(), voice)  # fail fast on a misconfigured voice

    @property
    def sample_rate(self) -> int:
        """Output rate reported by espeak_Initialize (22050 for the bundled voices)."""
        with _lock:
            _ensure_init()
            return _sample_rate

    def synthesize(
        self, text: str, voice: str | None = None, rate_wpm: int | None = None
    ) -> np.ndarray:
        """Speak `text` and return int16 mono samples. Blocks for the whole utterance."""
        global _chunks
        voice = voice or self.voice
        rate = self.rate_wpm if rate_wpm is None else rate_wpm
        if rate <= 0:
            raise ValueError(f"rate_wpm must be positive, got {rate}")
        if not text.strip():
            return np.zeros(0, dtype=np.int16)
        data = text.encode("utf-8")
        with _lock:
            lib = _ensure_init()
            _set_voice(lib, voice)
            lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
            _chunks = []
            try:
                err = lib.espeak_Synth(
                    data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
                )
                chunks = _chunks
            finally:
                _chunks = None
        if err != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {err}")
        return np.frombuffer(b"".join(chunks), dtype=np.int16).copy()
