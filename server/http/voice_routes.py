"""Voice processing: speech to text, text to speech, and one whole voice-agent turn.

Uploads are decoded (any container, rate and channel count) to the pipeline's 16 kHz mono
PCM in a worker thread; speech-to-text and text-to-speech call the configured providers, the
same ones the pipeline's stages call, and a voice-agent turn runs through a VoiceSession.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, UploadFile
from fastapi.responses import Response

from pipeline.text import clean_for_speech
from server.auth.caller import CONVERSE
from server.auth.http import CallerDep
from server.http import audio_codec
from server.http.deps import CoreDep, read_upload
from server.http.errors import ERROR_RESPONSES
from server.http.schemas import SpeechIn, TranscriptionOut, VoiceTurnOut
from server.http.turns import run_turn, turn_response
from server.sessions import ids

router = APIRouter(tags=["Voice processing"])
AUDIO_FILE = File(
    description="A recording: WAV, MP3, WebM/Opus, OGG, FLAC or M4A; any sample rate, mono "
    "or stereo; at most 25 MiB and 60 seconds."
)
AUDIO_MEDIA = {
    spec.media_type: {"schema": {"type": "string", "format": "binary"}}
    for spec in audio_codec.ENCODINGS.values()
}


@router.post(
    "/voice/speech-to-text",
    summary="Transcribe an audio file",
    response_model=TranscriptionOut,
    responses=ERROR_RESPONSES,
)
async def speech_to_text(
    core: CoreDep,
    caller: CallerDep,
    audio_file: Annotated[UploadFile, AUDIO_FILE],
) -> TranscriptionOut:
    """Speech-to-text with the configured STT provider (OpenAI Whisper or the offline model)."""
    caller.require(CONVERSE)
    data = await read_upload(audio_file)
    decoded = await asyncio.to_thread(audio_codec.decode, data, "audio_file")
    text = await core.providers.stt.transcribe(decoded.pcm, audio_codec.PIPELINE_RATE)
    return TranscriptionOut(
        text=text,
        duration=round(decoded.duration_s, 3),
        language=core.settings.stt_language,
        format=decoded.container,
    )


@router.post(
    "/voice/text-to-speech",
    summary="Synthesize speech from text",
    response_class=Response,
    responses={
        200: {"description": "The speech as an audio file.", "content": AUDIO_MEDIA},
        **ERROR_RESPONSES,
    },
)
async def text_to_speech(body: SpeechIn, core: CoreDep, caller: CallerDep) -> Response:
    """Text-to-speech with the configured TTS provider; MP3 unless `format` asks otherwise.
    Markdown and emoji are not read aloud."""
    caller.require(CONVERSE)
    text = clean_for_speech(body.text)
    if not text:
        raise HTTPException(422, "text has nothing speakable (only emoji, symbols or markup)")
    tts, pcm = core.providers.tts, bytearray()
    async for piece in tts.stream(text, body.voice or None):
        pcm += piece
    data = await asyncio.to_thread(audio_codec.encode, bytes(pcm), tts.sample_rate, body.format)
    spec = audio_codec.ENCODINGS[body.format]
    raw = body.format == "pcm"
    headers = {"X-Sample-Rate": str(tts.sample_rate), "X-Channels": "1"} if raw else {}
    return Response(data, media_type=spec.media_type, headers=headers)


@router.post(
    "/voice-agent/process",
    summary="One voice-agent turn: audio in, transcript, reply text and reply audio out",
    response_model=VoiceTurnOut,
    responses=ERROR_RESPONSES,
)
async def voice_agent_process(
    core: CoreDep,
    caller: CallerDep,
    audio_file: Annotated[UploadFile, AUDIO_FILE],
    session_id: Annotated[
        str,
        Form(  # an empty form field counts as missing (422): the schema says so with min_length
            min_length=1, description="From /conversation/start (or any id a WebSocket used)."
        ),
    ],
) -> VoiceTurnOut:
    """The complete pipeline for one turn: the recording is one utterance, transcribed, answered
    in the session's context and spoken; the reply audio is an MP3 in `audio_base64`."""
    sid = ids.client_chosen(session_id, caller.tenant_id)
    caller.require(CONVERSE, sid)
    data = await read_upload(audio_file)
    decoded = await asyncio.to_thread(audio_codec.decode, data, "audio_file")
    outcome = await run_turn(
        core.opener, caller, sid, lambda session: session.push_utterance(decoded.pcm)
    )
    body = await turn_response(outcome, True, input_duration=round(decoded.duration_s, 3))
    return VoiceTurnOut(**body)
