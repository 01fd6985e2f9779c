"""The Transcribe and Synthesize RPCs."""

from __future__ import annotations

import grpc
import pytest
from voiceagent.v1 import audio_pb2
from voiceagent.v1 import voice_agent_service_pb2 as pb

from testing.fakes import Fault
from testing.speech import frames, speech_pcm

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


def transcribe_requests(rate: int, channels: int, *utterances: str):
    fmt = audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=rate, channels=channels)
    yield pb.TranscribeRequest(config=pb.TranscribeConfig(input_format=fmt))
    for words in utterances:
        for frame in frames(speech_pcm(words, rate, channels), rate, channels, 20):
            yield pb.TranscribeRequest(audio=frame)


async def test_transcribe_gives_one_transcript_per_segment_with_offsets(agent, fake_openai):
    fake_openai.transcripts.extend(["first part", "second part"])
    events = [
        e
        async for e in agent.stub.Transcribe(
            transcribe_requests(8_000, 2, "Hello, this is the first part", "And the second")
        )
    ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["speech_started", "speech_stopped", "transcript"] * 2
    first, second = (e.transcript for e in events if e.WhichOneof("event") == "transcript")
    assert (first.text, second.text) == ("first part", "second part")
    assert first.is_final and first.start_offset_ms < first.end_offset_ms < second.start_offset_ms
    # The second utterance's speech begins 300 ms (its lead silence) after the first one's
    # audio ends; with 300 ms of pre-roll its segment starts right where that audio ended.
    first_len_ms = len(speech_pcm("Hello, this is the first part", 8_000, 2)) / 4 / 8
    assert abs(second.start_offset_ms - first_len_ms) < 100


async def test_transcribe_provider_failure_is_an_error_event(agent, fake_openai):
    fake_openai.inject("transcriptions", Fault.status(500), Fault.status(500))
    events = [e async for e in agent.stub.Transcribe(transcribe_requests(16_000, 1, "Hello"))]
    errors = [e.error for e in events if e.WhichOneof("event") == "error"]
    assert len(errors) == 1 and "speech-to-text provider failed: HTTP 500" in errors[0].message


async def test_transcribe_rejects_audio_first(agent):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in agent.stub.Transcribe(iter([pb.TranscribeRequest(audio=b"\0\0")])):
            pass
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("rate", [8_000, 24_000, 48_000])
async def test_synthesize_streams_audio_at_requested_rate(agent, fake_openai, rate):
    text = "Your pizza will arrive in twenty minutes."
    request = pb.SynthesizeRequest(
        text=text,
        output_format=audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=rate, channels=1),
    )
    chunks = [c async for c in agent.stub.Synthesize(request)]
    audio = b"".join(c.audio for c in chunks)
    expected_s = len(text) * fake_openai.tts_ms_per_char / 1000
    assert abs(len(audio) / 2 / rate - expected_s) < 0.01
    assert [c.offset_ms for c in chunks] == sorted(c.offset_ms for c in chunks)
    assert len(chunks) > 1  # streamed in pieces, not one blob


@pytest.mark.parametrize(
    "text,code,message",
    [
        ("", "INVALID_ARGUMENT", "text is empty"),
        ("x" * 4001, "OUT_OF_RANGE", "limit is 4000"),
        ("🍕🍕🍕", "INVALID_ARGUMENT", "nothing speakable"),
    ],
)
async def test_synthesize_bad_text(agent, text, code, message):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in agent.stub.Synthesize(pb.SynthesizeRequest(text=text)):
            pass
    assert info.value.code().name == code and message in info.value.details()


async def test_synthesize_provider_down_is_unavailable(agent, fake_openai):
    fake_openai.inject("speech", Fault.drop(), Fault.drop())
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in agent.stub.Synthesize(pb.SynthesizeRequest(text="Hello there")):
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "text-to-speech provider failed" in info.value.details()
