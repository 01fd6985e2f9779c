"""Audio files in and out of the pipeline's PCM, with PyAV (ffmpeg inside its wheel).

Clients upload recordings in whatever their platform makes (WAV, MP3, WebM/Opus, OGG, FLAC,
M4A) at any rate, mono or stereo; the pipeline wants 16 kHz mono 16-bit PCM. Uploads are
untrusted, so ffmpeg may only use the demuxers of those formats (no playlists or other
formats that open further files), and decoding stops as soon as the audio passes the duration
limit. Agent audio leaves as MP3 by default. Everything here blocks on CPU: call it through
`asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

from pipeline.audio import PIPELINE_RATE

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # the same bound OpenAI puts on transcription uploads
MAX_DURATION_S = 60.0  # one utterance; longer audio is refused rather than cut
# ffmpeg demuxer names; "matroska" covers WebM, "mov" covers M4A/MP4 (Safari's MediaRecorder).
ALLOWED_DEMUXERS = "wav,mp3,ogg,matroska,webm,flac,mov,mp4,m4a,aac"
UPLOAD_FORMATS = ("wav", "mp3", "webm", "ogg", "opus", "flac", "m4a", "mp4", "aac")


class AudioError(ValueError):
    """The audio cannot be used; the message says why (HTTP 400)."""


class AudioTooLarge(AudioError):
    """Over the size or duration limit (HTTP 413)."""


@dataclass(frozen=True)
class Decoded:
    pcm: bytes  # 16 kHz mono int16 little-endian
    container: str  # ffmpeg's name for what was uploaded, e.g. "wav", "matroska,webm"
    codec: str
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / PIPELINE_RATE


def check_size(nbytes: int, what: str = "audio") -> None:
    if nbytes == 0:
        raise AudioError(f"{what} is empty")
    if nbytes > MAX_UPLOAD_BYTES:
        raise AudioTooLarge(
            f"{what} is {nbytes} bytes; the limit is {MAX_UPLOAD_BYTES} bytes (25 MiB)"
        )


def decode(data: bytes, what: str = "audio", max_duration_s: float = MAX_DURATION_S) -> Decoded:
    """Any accepted container and codec -> 16 kHz mono PCM."""
    check_size(len(data), what)
    max_bytes = int(max_duration_s * PIPELINE_RATE) * 2
    out = bytearray()
    try:
        with av.open(
            io.BytesIO(data), mode="r", options={"format_whitelist": ALLOWED_DEMUXERS}
        ) as container:
            stream = next((s for s in container.streams if isinstance(s, av.AudioStream)), None)
            if stream is None:
                raise AudioError(f"{what} has no audio stream")
            resampler = av.AudioResampler(format="s16", layout="mono", rate=PIPELINE_RATE)
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    out += converted.to_ndarray().tobytes()
                if len(out) > max_bytes:
                    raise AudioTooLarge(
                        f"{what} is longer than the limit of {max_duration_s:g} seconds"
                    )
            for converted in resampler.resample(None):
                out += converted.to_ndarray().tobytes()
            kind = (container.format.name, stream.codec_context.name)
            source = (stream.codec_context.sample_rate, stream.codec_context.channels)
    except AudioError:
        raise
    except (av.FFmpegError, OSError, EOFError, ValueError) as exc:
        raise AudioError(
            f"{what} could not be decoded as audio ({_reason(exc)}); send WAV, MP3, "
            "WebM/Opus, OGG, FLAC or M4A"
        ) from None
    if len(out) > max_bytes:
        raise AudioTooLarge(f"{what} is longer than the limit of {max_duration_s:g} seconds")
    if not out:
        raise AudioError(f"{what} contains no audio samples (empty or truncated recording?)")
    return Decoded(bytes(out), kind[0], kind[1], source[0], source[1])


def _reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return "not a supported audio format" if "Invalid argument" in text else text


@dataclass(frozen=True)
class Encoding:
    container: str  # ffmpeg muxer; "" = raw PCM, no container
    codec: str
    media_type: str


ENCODINGS = {
    "mp3": Encoding("mp3", "libmp3lame", "audio/mpeg"),
    "wav": Encoding("wav", "pcm_s16le", "audio/wav"),
    "opus": Encoding("ogg", "libopus", "audio/ogg"),
    "flac": Encoding("flac", "flac", "audio/flac"),
    "pcm": Encoding("", "", "audio/pcm"),  # 16-bit little-endian mono at the stated rate
}


def encode(pcm: bytes, sample_rate: int, fmt: str = "mp3") -> bytes:
    """16-bit mono PCM -> a file in `fmt` (a key of ENCODINGS)."""
    spec = ENCODINGS[fmt]
    if not spec.container:
        return pcm
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=spec.container) as container:
        rates = av.Codec(spec.codec, "w").audio_rates  # None: any rate
        rate = sample_rate if not rates or sample_rate in rates else max(rates)
        stream = container.add_stream(spec.codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)  # every codec in ENCODINGS is an audio codec
        if pcm:
            samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = sample_rate  # the encoder resamples to `rate` if they differ
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()
