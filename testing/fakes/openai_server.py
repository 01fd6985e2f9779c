"""Deterministic fake of the OpenAI HTTP API for tests and benchmarks.

Real HTTP on loopback (aiohttp) so the official ``openai`` SDK is exercised end to end:
its retries, timeouts, SSE parsing and streaming bodies all run against this server.
It runs inside the caller's event loop; every wait is interruptible by ``stop()``::

    async with FakeOpenAI() as fake:
        fake.inject("chat", Fault.status(429, retry_after=0.05))
        client = openai.AsyncOpenAI(api_key="test", base_url=fake.base_url)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import json
import math
import re
import time
import wave
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from testing.fakes.chat_script import ScriptedReply, reply_chunks

ENDPOINTS = ("transcriptions", "chat", "speech", "models")
TTS_RATE = 24_000
CREATED = 1_700_000_000  # fixed timestamp keeps responses byte-for-byte deterministic
# A handler answers with a whole response, or (content type, body chunks, delay between chunks).
Reply = web.Response | tuple[str, list[Any], float]
_ERROR_KINDS = {
    401: ("invalid_request_error", "invalid_api_key"),  # (type, code) as OpenAI sends
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, consumed by a single request (see ``FakeOpenAI.inject``)."""

    kind: str  # "status" | "stall" | "drop" | "drop_mid_stream"
    code: int = 0
    retry_after: float | None = None
    message: str = "injected"
    after_chunks: int = 0

    @classmethod
    def status(cls, code: int, retry_after: float | None = None, message: str = "injected"):
        """Reply with an OpenAI-shaped error; ``retry_after`` sets Retry-After + retry-after-ms."""
        return cls("status", code=code, retry_after=retry_after, message=message)

    @classmethod
    def stall(cls):
        """Never answer (until ``stop()``): exercises client timeouts."""
        return cls("stall")

    @classmethod
    def drop(cls):
        """Close the TCP connection without any response: a connection error for the client."""
        return cls("drop")

    @classmethod
    def drop_mid_stream(cls, after_chunks: int):
        """Send ``after_chunks`` body chunks, then close; non-streamed replies act as drop()."""
        return cls("drop_mid_stream", after_chunks=after_chunks)


@dataclass
class AudioInfo:
    """What was uploaded for transcription; WAV fields are None when it is not a WAV."""

    filename: str | None
    content_type: str | None
    size_bytes: int
    sample_rate: int | None = None
    channels: int | None = None
    duration_s: float | None = None
    pcm: bytes = b""


@dataclass
class Recorded:
    """One received request. ``body``: form fields (transcriptions) or the JSON body."""

    endpoint: str
    body: dict
    audio: AudioInfo | None = None
    at: float = field(default_factory=time.monotonic)


def openai_error(status: int, message: str, headers: dict | None = None) -> web.Response:
    """An error response in OpenAI's shape, which the SDK turns into ``APIStatusError``s."""
    default = ("server_error" if status >= 500 else "invalid_request_error", None)
    etype, code = _ERROR_KINDS.get(status, default)
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


# 220 Hz at 24 kHz repeats exactly every 1200 samples (11 cycles): compute once, then tile.
_SINE_PERIOD = b"".join(
    round(9830 * math.sin(2 * math.pi * 220 * i / TTS_RATE)).to_bytes(2, "little", signed=True)
    for i in range(1200)
)  # amplitude 9830 ~= 0.3 * 32767


def sine_pcm(duration_s: float) -> bytes:
    """24 kHz mono int16 220 Hz sine of an exact length; tiling keeps it cheap for the loop."""
    nbytes = 2 * round(duration_s * TTS_RATE)
    reps = nbytes // len(_SINE_PERIOD) + 1
    return (_SINE_PERIOD * reps)[:nbytes]


def _wav_bytes(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(TTS_RATE)
        w.writeframes(pcm)
    return out.getvalue()


def _audio_info(filename: str | None, content_type: str | None, data: bytes) -> AudioInfo:
    info = AudioInfo(filename, content_type, len(data))
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            info.sample_rate, info.channels = w.getframerate(), w.getnchannels()
            info.duration_s = w.getnframes() / info.sample_rate
            info.pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError, ZeroDivisionError):  # not a (sane) WAV
        pass
    return info


async def _parse_form(request: web.Request) -> tuple[dict, AudioInfo | None]:
    """Multipart form fields -> body dict; the ``file`` part -> AudioInfo."""
    form = await request.post()
    audio, body = None, {}
    for key in dict.fromkeys(form.keys()):
        values = form.getall(key)
        if isinstance(values[0], web.FileField):
            f = values[0]
            audio = _audio_info(f.filename, f.content_type, f.file.read())
        else:  # repeated fields (arrays such as timestamp_granularities[]) become lists
            body[key] = values[0] if len(values) == 1 else values
    return body, audio


def _text_of(content: Any) -> str:
    """Message content is a string or a list of parts ({"type": "text", "text": ...})."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class FakeOpenAI:
    """Scriptable OpenAI-compatible server on 127.0.0.1 (random port).

    Public attributes (set them freely before or between requests):

    - ``transcripts`` / ``default_transcript``: STT results, popped per request.
    - ``chat_replies``: chat replies (strings or chat_script.ScriptedReply with tool calls
      and pauses), popped per request; default "You said: {last user}.".
    - ``latency``: seconds before a response starts, keys "transcriptions", "chat", "speech".
    - ``chat_token_delay``: seconds between streamed chat chunks.
    - ``tts_ms_per_char`` (speech lasts max(100 ms, len(input) * it)), ``tts_chunk_bytes``,
      ``tts_chunk_delay``: shape of the streamed speech body.
    - ``requests`` (every request, in order) and ``calls`` (count per endpoint, faults too).
    """

    def __init__(self) -> None:
        self.transcripts: collections.deque[str] = collections.deque()
        self.default_transcript = "hello there"
        self.chat_replies: collections.deque[str | ScriptedReply] = collections.deque()
        self.latency: dict[str, float] = {"transcriptions": 0.0, "chat": 0.0, "speech": 0.0}
        self.chat_token_delay = 0.0
        self.tts_ms_per_char = 20.0
        self.tts_chunk_bytes = 4800  # 100 ms of 24 kHz int16
        self.tts_chunk_delay = 0.0
        self.requests: list[Recorded] = []
        self.calls: collections.Counter[str] = collections.Counter()
        self.models_seen = {"gpt-4o-mini", "gpt-4o-mini-transcribe", "gpt-4o-mini-tts"}
        self._faults: dict[str, collections.deque[Fault]] = {
            e: collections.deque() for e in ENDPOINTS
        }
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> Self:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)  # default 1 MiB is < 30 s of audio
        app.router.add_post("/v1/audio/transcriptions", self._route("transcriptions"))
        app.router.add_post("/v1/chat/completions", self._route("chat"))
        app.router.add_post("/v1/audio/speech", self._route("speech"))
        app.router.add_get("/v1/models", self._route("models"))
        # Handlers all wake on stop(); the short timeout is only a backstop against hangs.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._stopping.set()  # releases stalled / sleeping handlers first
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def inject(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for ``endpoint``; each request to it consumes one before normal handling."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {ENDPOINTS}")
        self._faults[endpoint].extend(faults)

    # -- plumbing shared by all endpoints ----------------------------------------------
    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stop() comes first; returns False when the server is stopping."""
        if seconds > 0 and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)
        return not self._stopping.is_set()

    @staticmethod
    def _drop(request: web.Request, resp: web.StreamResponse | None = None) -> web.StreamResponse:
        """Close the socket; aiohttp then fails to write the (unsent) response and moves on."""
        if request.transport is not None:
            request.transport.close()  # close(), not abort(): already-written chunks get flushed
        return resp if resp is not None else web.Response()

    def _route(self, endpoint: str):
        """Wrap an endpoint: parse, record, apply an injected fault, check auth, wait, reply."""
        handler = getattr(self, f"_{endpoint}")

        async def serve(request: web.Request) -> web.StreamResponse:
            audio = None
            if endpoint == "transcriptions":
                body, audio = await _parse_form(request)
            else:
                try:
                    body = await request.json()
                except ValueError:  # GET /models, or a malformed body
                    body = None
                body = body if isinstance(body, dict) else {}
            self.calls[endpoint] += 1
            self.requests.append(Recorded(endpoint, body, audio))
            if isinstance(body.get("model"), str):
                self.models_seen.add(body["model"])
            fault = self._faults[endpoint].popleft() if self._faults[endpoint] else None
            kind = fault.kind if fault else None
            if fault and kind == "status":
                headers = {}
                if fault.retry_after is not None:  # the SDK reads retry-after-ms first
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                    headers["retry-after-ms"] = f"{fault.retry_after * 1000:g}"
                return openai_error(fault.code, fault.message, headers)
            if kind == "stall":
                await self._stopping.wait()
            if kind in ("stall", "drop"):
                return self._drop(request)
            if not request.headers.get("Authorization", "").startswith("Bearer "):
                return openai_error(401, "Missing bearer token in Authorization header.")
            if not await self._sleep(self.latency.get(endpoint, 0.0)):
                return self._drop(request)
            cut = fault.after_chunks if fault else None
            reply = handler(body, audio)
            if isinstance(reply, web.Response):  # whole-body replies cannot be cut mid-stream
                return self._drop(request) if cut is not None else reply
            content_type, chunks, delay = reply
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            await resp.prepare(request)
            for i, chunk in enumerate(chunks):
                if isinstance(chunk, ScriptedReply):  # a scripted pause: wait for the test
                    chunk.paused.set()
                    assert chunk.pause is not None
                    await _first(chunk.pause.wait(), self._stopping.wait())
                    continue
                if cut is not None and i >= cut:
                    return self._drop(request, resp)
                if i and delay > 0 and not await self._sleep(delay):
                    return self._drop(request, resp)
                await resp.write(chunk)
            await resp.write_eof()
            return resp

        return serve

    # -- endpoints: pure functions of the request and the scripted state ------------------
    def _transcriptions(self, body: dict, audio: AudioInfo | None) -> Reply:
        if audio is None:
            return openai_error(400, "Missing required multipart field 'file'.")
        text = self.transcripts.popleft() if self.transcripts else self.default_transcript
        fmt = body.get("response_format", "json")
        if fmt == "json":
            return web.json_response({"text": text})
        if fmt in ("text", "srt", "vtt"):
            return web.Response(text=text, content_type="text/plain")
        if fmt == "verbose_json":
            duration = audio.duration_s or 0.0
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": "en",
                    "duration": duration,
                    "text": text,
                    "segments": [],
                    "usage": {"type": "duration", "seconds": duration},
                }
            )
        return openai_error(400, f"Unsupported response_format {fmt!r} in the fake.")

    def _chat(self, body: dict, audio: AudioInfo | None) -> Reply:
        messages = body.get("messages") or []
        if not messages:
            return openai_error(400, "'messages' must be a non-empty array.")
        user = [m for m in messages if m.get("role") == "user"]
        last = _text_of(user[-1].get("content")) if user else ""
        scripted = self.chat_replies.popleft() if self.chat_replies else f"You said: {last}."
        reply = scripted if isinstance(scripted, ScriptedReply) else ScriptedReply(scripted)
        model, cid = body.get("model", "gpt-4o-mini"), f"chatcmpl-fake{self.calls['chat']}"
        n_out = len(re.findall(r"\S+\s*", reply.text)) + len(reply.tool_calls)
        n_in = sum(len(_text_of(m.get("content")).split()) for m in messages)
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        head = {"id": cid, "created": CREATED, "model": model}
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply.text, "refusal": None}
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
            return web.json_response(
                {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def sse(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
            choices = (
                []
                if delta is None
                else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            )
            obj = {**head, "object": "chat.completion.chunk", "choices": choices}
            if include_usage:  # OpenAI then sends "usage": null on all but the last chunk
                obj["usage"] = usage
            return b"data: " + json.dumps(obj).encode() + b"\n\n"

        chunks, _ = reply_chunks(reply, sse, self.calls["chat"])
        if include_usage:
            chunks.append(sse(None, usage=usage))
        return "text/event-stream", [*chunks, b"data: [DONE]\n\n"], self.chat_token_delay

    def _speech(self, body: dict, audio: AudioInfo | None) -> Reply:
        text = body.get("input") or ""
        if not text:
            return openai_error(400, "'input' must be a non-empty string.")
        fmt = body.get("response_format", "mp3")
        if fmt not in ("pcm", "wav"):
            msg = f"The fake supports response_format 'pcm' and 'wav' only, got {fmt!r}."
            return openai_error(400, msg)
        pcm = sine_pcm(max(100.0, len(text) * self.tts_ms_per_char) / 1000)
        data = pcm if fmt == "pcm" else _wav_bytes(pcm)
        size = max(1, int(self.tts_chunk_bytes))
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        return f"audio/{fmt}", chunks, self.tts_chunk_delay

    def _models(self, body: dict, audio: AudioInfo | None) -> Reply:
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
            for m in sorted(self.models_seen)
        ]
        return web.json_response({"object": "list", "data": data})
