"""7. Offline: the real local models (no fake server), alone and through `python -m server`.

Models, in this process, as the server builds them (`server/providers.py` defaults):
- STT (faster-whisper tiny.en): compute time per second of eSpeak speech (real-time factor
  x 1000), a few sentences per run;
- LLM (SmolLM2-135M on llama.cpp): request -> first token through `LocalChat.stream` (its
  system prompt, its worker), and decode tokens/s after the first (one streamed piece = one
  token), with no sentence cap and `offline_llm_tokens` at most;
- TTS (eSpeak NG): compute time per second of audio produced.

Turns: `python -m server` started as `bench/stack.py` starts it, but with every role set to
`local`, no OPENAI_API_KEY and no fake provider. N sessions (1, then 4 at once, staggered)
each speak an eSpeak utterance at real-time pace (20 ms frames on an absolute schedule,
silence between turns), wait for the reply's first audio, listen `offline_listen_s`, then
press INTERRUPT (so the next turn need not wait out seconds of reply audio) and speak again.
The goal figure is the server's own TurnCompleted.latency.end_of_speech_to_first_audio_ms
(last speech window received -> first agent audio sent), which includes the VAD stop wait
(`vad_stop_ms`, 400 ms here) as a caller experiences it. Client-side voice-to-voice (first
audio received - scheduled time of the last speech frame) is shown beside it. The live part
runs once per invocation (not `--repeat` times: each turn takes seconds); its turns are the
samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from voiceagent.v1 import converse_pb2
from voiceagent.v1 import voice_agent_service_pb2_grpc as pb_grpc

from bench.context import BenchConfig, Context
from bench.procs import Child, child, free_port, wait_healthy
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.stack import stop_postgres
from bench.stats import percentile
from bench.streams import FRAME_MS, FRAME_S, LEAD_MS, RATE, Request, VadTiming, config
from testing.speech import frames, speech_pcm

GOAL_MS = 1500.0
SENTENCES = (
    "What is the weather like today?",
    "I would like to book a table for two people at seven tonight.",
    "Can you tell me how long the drive to the airport takes?",
)
PROMPTS = (
    "Tell me a short story about a dog who finds a ball.",
    "Explain how a bicycle works.",
    "Describe a sunny day at the beach.",
)
UTTERANCES = (  # what the callers say, in turn; no commas, so the VAD hears one utterance each
    "What is the weather like today?",
    "Can you recommend a good book to read?",
    "How far away is the moon?",
    "What time does the bakery open?",
)
PAUSE_S = 0.3  # silence after a turn completes, before the next utterance
TURN_TIMEOUT_S = 30.0
INTERRUPT = Request(control=converse_pb2.Control(action=converse_pb2.CONTROL_ACTION_INTERRUPT))
SILENCE = Request(audio=bytes(2 * RATE * FRAME_MS // 1000))


def specs(cfg: BenchConfig) -> dict[str, Spec]:
    out = {
        "stt_rtf": Spec("STT (whisper tiny.en) compute per s of speech (RTF x 1000)", "ms/s"),
        "llm_first_token": Spec("LLM (SmolLM2-135M) request -> first token", "ms", latency=True),
        "llm_tokens_per_s": Spec("LLM decode after the first token", "tokens/s"),
        "tts_rtf": Spec("TTS (eSpeak NG) compute per s of audio (RTF x 1000)", "ms/s"),
    }
    for n in dict.fromkeys(cfg.offline_sessions):
        goals = (Goal("p50", "<=", GOAL_MS),) if n == 1 else ()
        out[f"n{n}.turn"] = Spec(
            f"N={n}: end of speech -> first audio (server, incl. VAD stop wait)",
            "ms",
            latency=True,
            goals=goals,
            note="" if goals else "info, no goal",
        )
        out[f"n{n}.turn_p95"] = Spec(f"N={n}:   same, p95", "ms")
        out[f"n{n}.v2v"] = Spec(f"N={n}: last speech frame -> first audio (client)", "ms", True)
        out[f"n{n}.stt"] = Spec(f"N={n}:   of which VAD stop -> transcript", "ms", latency=True)
        out[f"n{n}.llm"] = Spec(f"N={n}:   of which LLM request -> first token", "ms", True)
        out[f"n{n}.turns"] = Spec(f"N={n}: turns measured (errors: see the log)", "turns")
    return out


@scenario("offline", "Offline mode (local STT, LLM, TTS; real models)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    rec = Recorder("offline", specs(cfg))
    ctx.log("offline: loading the local models in this process")
    models = _Models(cfg)
    for i in range(cfg.repeat):
        ctx.log(f"offline: models, run {i + 1}/{cfg.repeat}")
        asyncio.run(models.measure(rec))
    with offline_server(ctx) as target:
        for n in dict.fromkeys(cfg.offline_sessions):
            ctx.log(f"offline: {n} session(s) x {cfg.offline_turns} turn(s)")
            res = asyncio.run(_sessions(cfg, target, n))
            if res.errors:
                ctx.log(f"  {len(res.errors)} error(s), e.g. {res.errors[:3]}")
            if not res.server:
                raise RuntimeError(f"no turn completed with {n} session(s): {res.errors[:3]}")
            rec.add(f"n{n}.turn", res.server)
            rec.add(f"n{n}.turn_p95", percentile(res.server, 95))
            rec.add(f"n{n}.v2v", res.v2v)
            rec.add(f"n{n}.stt", res.stt)
            rec.add(f"n{n}.llm", res.llm)
            rec.add(f"n{n}.turns", len(res.server))
            rec.runs[f"n{n}.turns"][-1]["errors"] = res.errors[:20]
            ctx.log(
                f"  end of speech -> first audio p50 {percentile(res.server, 50):.0f} ms "
                f"(client {percentile(res.v2v, 50):.0f} ms) over {len(res.server)} turns"
            )
    return rec.figures()


class _Models:
    """The local providers, loaded (and warmed up) once, as the server loads them."""

    def __init__(self, cfg: BenchConfig) -> None:
        from pipeline.providers.local_chat import LocalChat
        from pipeline.providers.local_stt import LocalSpeechToText
        from pipeline.providers.local_tts import LocalTextToSpeech

        self.cfg = cfg
        self.stt = LocalSpeechToText()
        self.chat = LocalChat(max_tokens=cfg.offline_llm_tokens, max_sentences=0)
        self.tts = LocalTextToSpeech()

    async def measure(self, rec: Recorder) -> None:
        from pipeline.providers.base import ChatMessage

        items = self.cfg.offline_model_items
        compute = audio = 0.0
        for text in SENTENCES[:items]:
            pcm = speech_pcm(text, RATE, 1, lead_silence_ms=300, tail_silence_ms=300)
            start = time.perf_counter()
            await self.stt.transcribe(pcm, RATE)
            compute += time.perf_counter() - start
            audio += len(pcm) / (2 * RATE)
        rec.add("stt_rtf", compute / audio * 1000)

        first_ms, tokens, decode_s = [], 0, 0.0
        for prompt in PROMPTS[:items]:
            start = time.perf_counter()
            first = last = None
            count = 0
            async for _ in self.chat.stream([ChatMessage("user", prompt)]):
                last = time.perf_counter()
                first = first or last
                count += 1
            if first is not None and last is not None:
                first_ms.append((first - start) * 1000)
                tokens += count - 1
                decode_s += last - first
        rec.add("llm_first_token", first_ms)
        rec.add("llm_tokens_per_s", tokens / decode_s if decode_s > 0 else float("nan"))

        compute = audio = 0.0
        for text in SENTENCES[:items]:
            start = time.perf_counter()
            pcm = b"".join([chunk async for chunk in self.tts.stream(text)])
            compute += time.perf_counter() - start
            audio += len(pcm) / (2 * self.tts.sample_rate)
        rec.add("tts_rtf", compute / audio * 1000)


@contextlib.contextmanager
def offline_server(ctx: Context) -> Iterator[str]:
    """`python -m server` as bench/stack.py starts it, but every role local, no OpenAI key."""
    cfg = ctx.config
    port = free_port()
    env = {
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": str(port),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "OPENAI_API_KEY": "",  # none, so nothing can reach OpenAI or a fake of it
        # Explicit, so a developer's .env cannot swap in OpenAI or a real database.
        "STT_PROVIDER": "local",
        "CHAT_PROVIDER": "local",
        "TTS_PROVIDER": "local",
        "DATABASE_URL": "",
        "DATA_DIR": str(ctx.data_dir),
        "VAD_START_MS": str(cfg.vad_start_ms),
        "VAD_STOP_MS": str(cfg.vad_stop_ms),
        "OUTPUT_LEAD_MS": str(cfg.output_lead_ms),
        "SHUTDOWN_GRACE_S": "1",
        "WORKERS": "1",  # one process (WORKERS defaults to the number of cores)
    }
    try:
        with child("server-offline", "server", [], env, 20.0, read_stdout=False) as server:
            _ready(server, port)
            yield f"127.0.0.1:{port}"
    finally:
        stop_postgres(ctx.data_dir)


def _ready(server: Child, port: int) -> None:
    wait_healthy(server, port, timeout=120.0)  # models load (and warm up) before serving


@dataclass
class _Results:
    server: list[float] = field(default_factory=list)  # TurnCompleted end of speech -> audio
    v2v: list[float] = field(default_factory=list)
    stt: list[float] = field(default_factory=list)
    llm: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _sessions(cfg: BenchConfig, target: str, n: int) -> _Results:
    out = _Results()
    callers = [_Caller(cfg, k, out) for k in range(n)]
    await asyncio.gather(*(c.connect(target) for c in callers))
    stagger = 4.0 / n  # spread over about one turn
    start = time.perf_counter() + 0.2
    turns = cfg.offline_warmup_turns + cfg.offline_turns
    budget = turns * TURN_TIMEOUT_S + 30.0
    await asyncio.wait_for(
        asyncio.gather(*(c.run(start + k * stagger) for k, c in enumerate(callers))), budget
    )
    return out


class _Caller:
    """One session: frames on a 20 ms schedule; speaks, waits for the reply, interrupts it."""

    def __init__(self, cfg: BenchConfig, index: int, out: _Results) -> None:
        self.cfg, self.index, self.out = cfg, index, out
        self.vad = VadTiming(cfg.vad_start_ms, cfg.vad_stop_ms)
        self.queued: list[Request] = []
        self.controls: list[Request] = []
        self.t0 = 0.0
        self.pending: dict[int, float] = {}  # speech_stopped end offset -> last speech frame
        self.turn_stop: dict[int, float] = {}  # turn -> scheduled time of its last speech frame
        self.first_audio: dict[int, float] = {}
        self.completed: dict[int, Any] = {}
        self.changed = asyncio.Event()
        self.counting = False

    async def connect(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.call = pb_grpc.VoiceAgentServiceStub(self.channel).Converse()
        await self.call.write(config(self.vad))
        first = await self.call.read()
        if first is grpc.aio.EOF or first.WhichOneof("event") != "session_started":
            raise RuntimeError(f"expected session_started, got {first}")
        names = first.session_started.providers
        if not all(p.startswith("local/") for p in (names.stt, names.chat, names.tts)):
            raise RuntimeError(f"the server is not fully local: {names}")

    async def run(self, start_at: float) -> None:
        self.t0 = start_at
        writer = asyncio.create_task(self._write())
        reader = asyncio.create_task(self._read())
        try:
            await self._converse()
        finally:
            writer.cancel()
            reader.cancel()
            self.call.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)
            await self.channel.close()

    async def _converse(self) -> None:
        cfg = self.cfg
        await asyncio.sleep(max(0.0, self.t0 - time.perf_counter()))
        last = 0  # the newest turn index seen so far
        for k in range(cfg.offline_warmup_turns + cfg.offline_turns):
            self.counting = k >= cfg.offline_warmup_turns
            text = UTTERANCES[(self.index + k) % len(UTTERANCES)]
            pcm = speech_pcm(text, RATE, 1, lead_silence_ms=LEAD_MS, tail_silence_ms=0)
            self.queued.extend(Request(audio=f) for f in frames(pcm, RATE, 1, FRAME_MS))
            if not await self._until(lambda last=last: self._newest() > last):
                self.out.errors.append(f"session {self.index}: no reply to utterance {k + 1}")
                continue
            turn = last = self._newest()
            if turn in self.first_audio and not await self._until(
                lambda t=turn: t in self.completed,
                cfg.offline_listen_s,
            ):
                self.controls.append(INTERRUPT)  # enough heard: on to the next utterance
            if not await self._until(lambda t=turn: t in self.completed):
                self.out.errors.append(f"session {self.index}: turn {turn} never completed")
            await asyncio.sleep(PAUSE_S)

    def _newest(self) -> int:
        return max([0, *self.first_audio, *self.completed])

    async def _until(self, cond: Callable[[], bool], timeout: float = TURN_TIMEOUT_S) -> bool:
        """Wait until `cond()` holds (True) or `timeout` passes (False)."""
        deadline = time.perf_counter() + timeout
        while not cond():
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return True

    async def _write(self) -> None:
        i = 0
        while True:
            delay = self.t0 + i * FRAME_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.call.write(self.queued.pop(0) if self.queued else SILENCE)
            while self.controls:
                await self.call.write(self.controls.pop(0))
            i += 1

    async def _read(self) -> None:
        while (event := await self.call.read()) is not grpc.aio.EOF:
            now = time.perf_counter()
            kind = event.WhichOneof("event")
            if kind == "speech_stopped":
                end = event.speech_stopped.end_offset_ms
                self.pending[end] = self.t0 + self.vad.last_speech(end) * FRAME_S
            elif kind == "transcript":
                stop = self.pending.pop(event.transcript.end_offset_ms, None)
                if stop is not None:
                    self.turn_stop[event.transcript.turn_index] = stop
            elif kind == "agent_audio":
                turn = event.agent_audio.turn_index
                if turn not in self.first_audio:
                    self.first_audio[turn] = now
                    if self.counting and turn in self.turn_stop:
                        self.out.v2v.append((now - self.turn_stop[turn]) * 1000)
            elif kind == "turn_completed":
                done = event.turn_completed
                self.completed[done.turn_index] = done
                lat = done.latency
                if self.counting and done.turn_index in self.first_audio:
                    self.out.server.append(lat.end_of_speech_to_first_audio_ms)
                    self.out.stt.append(lat.vad_stop_to_transcript_ms)
                    self.out.llm.append(lat.llm_first_token_ms)
            elif kind == "error":
                self.out.errors.append(f"session {self.index}: {event.error.message[:160]}")
            self.changed.set()
