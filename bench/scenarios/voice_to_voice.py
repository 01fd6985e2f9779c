"""4. Voice-to-voice share: how much of the wait after the caller stops talking is ours.

v2v = first agent audio received - scheduled time of the last speech frame. The framework
share removes what the framework cannot avoid: the VAD stop wait (the audio the VAD must hear
after the last speech window before it may decide: ceil(stop_ms / 32 ms) windows, frame
aligned), and the fake providers' configured latencies (STT + chat + TTS). What is left is
transport, VAD, queues, the OpenAI SDK's HTTP round trips to the fake and output pacing.

The SDK's part is measured on its own in the same run (bench.sdk_floor: the same provider
classes making a turn's three calls against a fake of the same latencies, nothing else), so
the share is shown beside it and what is left after it, the framework's own.
"""

from __future__ import annotations

import asyncio
import dataclasses

from bench.context import Context
from bench.live import cycle_job, live_run
from bench.procs import child
from bench.registry import Figure, Goal, Recorder, Spec, scenario
from bench.sdk_floor import sdk_turns
from bench.stack import FakeSettings
from bench.stats import median

GOALS = (Goal("p50", "<=", 10.0), Goal("p99", "<=", 30.0))
# Where the share goes, from the server's TurnLatency (whole ms) minus the fake's latency.
PARTS = {
    "stt_ms": ("  of which STT call beyond its latency (VAD stop -> transcript)", "stt_latency_s"),
    "llm_ms": ("  of which chat call beyond its latency (to first token)", "chat_latency_s"),
    "tts_ms": ("  of which TTS call beyond its latency (to first byte)", "tts_latency_s"),
}


@scenario("v2v", "Voice-to-voice framework share (live runs, fake providers)")
def run(ctx: Context) -> list[Figure]:
    cfg = ctx.config
    provider_ms = cfg.provider_latency_s * 1000
    specs: dict[str, Spec] = {}
    for n in dict.fromkeys(cfg.v2v_sessions):
        specs[f"n{n}.share"] = Spec(
            f"N={n}: framework share (v2v - VAD stop wait - {provider_ms:g} ms providers)",
            "ms",
            latency=True,
            goals=GOALS,
        )
        specs[f"n{n}.v2v"] = Spec(f"N={n}: voice-to-voice, raw", "ms", latency=True)
        specs[f"n{n}.server_turn"] = Spec(
            f"N={n}: server's own end-of-speech -> first audio (TurnCompleted)", "ms", True
        )
        for part, (label, _) in PARTS.items():
            specs[f"n{n}.{part}"] = Spec(f"N={n}: {label}", "ms", latency=True)
    first = cfg.v2v_sessions[0]  # 1 in the full run: the comparison reuses its plain runs
    specs["eager.v2v"] = Spec(f"N={first} with STT_EAGER=true: voice-to-voice, raw", "ms", True)
    specs["eager.saved"] = Spec(f"  raw v2v p50 saved by STT_EAGER at N={first}", "ms")
    for part, label in (("stt", "STT"), ("llm", "chat to first token"), ("tts", "TTS first byte")):
        specs[f"sdk.{part}"] = Spec(f"SDK alone, {label}, beyond its latency", "ms", True)
    specs["sdk.turn"] = Spec("SDK alone: a turn's three calls beyond their latencies", "ms", True)
    specs["beyond_sdk"] = Spec(f"N={first}: framework share less the SDK's own (p50s)", "ms")
    rec = Recorder("v2v", specs)
    for n in dict.fromkeys(cfg.v2v_sessions):
        for rep in range(cfg.repeat):
            d = live_run(ctx, cycle_job(cfg, n), rep).data
            rec.add(f"n{n}.share", d["share"])
            rec.add(f"n{n}.v2v", d["v2v"])
            rec.add(f"n{n}.server_turn", d["server_turn"])
            for part, (_, configured) in PARTS.items():
                fixed = getattr(cfg, configured) * 1000
                rec.add(f"n{n}.{part}", [x - fixed for x in d[part]])
    # Eager transcription hides the STT call inside the VAD's stop wait, which the share's
    # definition (providers subtracted as if serial) cannot show: raw v2v, side by side.
    eager = dataclasses.replace(cycle_job(cfg, first), env=(("STT_EAGER", "true"),))
    for rep in range(cfg.repeat):
        plain = live_run(ctx, cycle_job(cfg, first), rep).data["v2v"]
        eager_v2v = live_run(ctx, eager, rep).data["v2v"]
        rec.add("eager.v2v", eager_v2v)
        rec.add("eager.saved", median(plain) - median(eager_v2v))
    fake = FakeSettings.of(cfg)
    with child("fake-openai-sdk-floor", "testing.fakes", fake.args()) as proc:
        base = f"http://127.0.0.1:{proc.read_prefixed('PORT', 30.0)}/v1"
        for _ in range(cfg.repeat):
            parts = asyncio.run(sdk_turns(base, fake, cfg.utterance, cfg.sdk_turns, 1.0))
            turn = [sum(t) for t in zip(parts["stt"], parts["llm"], parts["tts"], strict=True)]
            for part, values in parts.items():
                rec.add(f"sdk.{part}", values)
            rec.add("sdk.turn", turn)
    share = median([r["p50"] for r in rec.runs[f"n{first}.share"]])
    rec.add("beyond_sdk", share - median([r["p50"] for r in rec.runs["sdk.turn"]]))
    return rec.figures()
