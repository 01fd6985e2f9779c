"""Talk to the agent from a WAV file: `python -m clients.talk speech.wav`.

Streams the WAV over Converse in 20 ms frames at real-time pace (as a microphone would),
prints transcripts and agent text as they arrive, and writes the agent's audio to a WAV file.
`--text` sends typed turns instead of audio. `--key` (or VOICE_AGENT_KEY) is sent as
`authorization: Bearer <key>` metadata on every call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave

import grpc
import numpy as np
import soxr
from voiceagent.v1 import audio_pb2, converse_pb2
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from pipeline.audio import INPUT_RATES, wav_bytes

FRAME_MS = 20
LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


def read_wav(path: str) -> tuple[bytes, int, int]:
    """16-bit PCM from a WAV; other rates are resampled to 16 kHz (the server takes 8/16/24/48k)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is supported")
        pcm, rate, channels = w.readframes(w.getnframes()), w.getframerate(), w.getnchannels()
    if rate not in INPUT_RATES:
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
        pcm, rate = soxr.resample(samples, rate, 16_000).astype("<i2").tobytes(), 16_000
    return pcm, rate, channels


async def requests(args, pcm: bytes, rate: int, channels: int):
    config = converse_pb2.SessionConfig(
        session_id=args.session,
        output_format=audio_pb2.AudioFormat(
            encoding=LINEAR16, sample_rate_hz=args.rate, channels=1
        ),
        voice=args.voice,
        instructions=args.instructions,
    )
    if pcm:
        config.input_format.CopyFrom(
            audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=rate, channels=channels)
        )
    yield converse_pb2.ConverseRequest(config=config)
    for text in args.text:
        yield converse_pb2.ConverseRequest(text=converse_pb2.UserText(text=text))
    frame = rate * channels * 2 * FRAME_MS // 1000
    start = time.perf_counter()
    for i, offset in enumerate(range(0, len(pcm), frame)):
        if not args.fast:  # absolute schedule: frame i leaves at start + i * 20 ms
            await asyncio.sleep(max(0.0, start + i * FRAME_MS / 1000 - time.perf_counter()))
        chunk = pcm[offset : offset + frame]
        yield converse_pb2.ConverseRequest(audio=chunk + b"\0" * (frame - len(chunk)))
    yield converse_pb2.ConverseRequest(
        control=converse_pb2.Control(action=converse_pb2.CONTROL_ACTION_END_OF_INPUT)
    )


async def talk(args) -> int:
    pcm, rate, channels = read_wav(args.wav) if args.wav else (b"", 16_000, 1)
    audio = bytearray()
    async with grpc.aio.insecure_channel(args.server) as channel:
        stub = pb_grpc.VoiceAgentServiceStub(channel)
        try:
            metadata = (("authorization", f"Bearer {args.key}"),) if args.key else None
            stream = stub.Converse(requests(args, pcm, rate, channels), metadata=metadata)
            async for event in stream:
                show(event, audio)
        except grpc.aio.AioRpcError as exc:
            print(f"\n[{exc.code().name}] {exc.details()}", file=sys.stderr)
            return 1
    if audio:
        with open(args.out, "wb") as f:
            f.write(wav_bytes(bytes(audio), args.rate))
        print(f"\nagent audio: {len(audio) / 2 / args.rate:.2f} s written to {args.out}")
    return 0


def show(event: converse_pb2.ConverseResponse, audio: bytearray) -> None:
    kind = event.WhichOneof("event")
    if kind == "session_started":
        s = event.session_started
        print(f"session {s.session_id} (stt={s.providers.stt} chat={s.providers.chat} "
              f"tts={s.providers.tts})")  # fmt: skip
    elif kind == "transcript":
        print(f"\nyou: {event.transcript.text}\nagent: ", end="", flush=True)
    elif kind == "agent_text_delta":
        print(event.agent_text_delta.text, end="", flush=True)
    elif kind == "agent_audio":
        audio.extend(event.agent_audio.audio)
    elif kind == "interrupted":
        print(f" [interrupted; heard: {event.interrupted.spoken_text!r}]", end="")
    elif kind == "turn_completed":
        lat = event.turn_completed.latency
        print(f"\n  (stt {lat.vad_stop_to_transcript_ms} ms, llm first token "
              f"{lat.llm_first_token_ms} ms, tts first byte {lat.tts_first_byte_ms} ms, "
              f"end of speech -> first audio {lat.end_of_speech_to_first_audio_ms} ms)")  # fmt: skip
    elif kind == "error":
        print(f"\n[error {converse_pb2.ErrorCode.Name(event.error.code)}] {event.error.message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wav", nargs="?", help="16-bit PCM WAV to speak (any rate, mono/stereo)")
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--text", action="append", default=[], help="a typed turn (repeatable)")
    parser.add_argument("--out", default="agent_reply.wav", help="where agent audio is written")
    parser.add_argument("--rate", type=int, default=24_000, help="agent audio sample rate")
    parser.add_argument("--voice", default="")
    parser.add_argument("--instructions", default="")
    parser.add_argument("--session", default="", help="continue this session id")
    parser.add_argument("--fast", action="store_true", help="send audio as fast as possible")
    parser.add_argument(
        "--key",
        default=os.environ.get("VOICE_AGENT_KEY", ""),
        help="API key, sent as a Bearer token (default: $VOICE_AGENT_KEY)",
    )
    args = parser.parse_args(argv)
    if not args.wav and not args.text:
        parser.error("give a WAV file or --text")
    return asyncio.run(talk(args))


if __name__ == "__main__":
    sys.exit(main())
