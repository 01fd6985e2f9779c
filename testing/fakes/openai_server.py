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
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from testing.fakes.chat_script import ScriptedReply, reply_chunks
from testing.fakes.faults import Fault, openai_error
from testing.fakes.upload_audio import AudioInfo, parse_form, sine_pcm, wav_bytes

ENDPOINTS = ("transcriptions", "chat", "speech", "models")
CREATED = 1_700_000_000  # fixed timestamp keeps responses byte-for-byte deterministic
# A handler answers with a whole response, or (content type, body chunks, delay between chunks).
Reply = web.Response | tuple[str, list[Any], float]


@dataclass
class Recorded:
    """One received request. ``body``: form fields (transcriptions) or the JSON body."""

    endpoint: str
    body: dict
    audio: AudioInfo | None = None
    at: float = field(default_factory=time.monotonic)


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
                body, audio = await parse_form(request)
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
        data = pcm if fmt == "pcm" else wav_bytes(pcm)
        size = max(1, int(self.tts_chunk_bytes))
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        return f"audio/{fmt}", chunks, self.tts_chunk_delay

    def _models(self, body: dict, audio: AudioInfo | None) -> Reply:
        data = [
            {"id": m, "object": "model", "created": CREATED, "owned_by": "fake"}
            for m in sorted(self.models_seen)
        ]
        return web.json_response({"object": "list", "data": data})
