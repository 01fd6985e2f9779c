"""The recorder component on its own: placement on the common clock, the writer thread, the
WAV files it leaves, and memory that stays flat through a long call."""

from __future__ import annotations

import gc
import threading
import wave

import av
import numpy as np

from pipeline.audio import PcmFormat
from pipeline.recording import CallRecorder, RecordingWriter, StereoMixer

RATE = 16_000
MONO16 = PcmFormat(16_000, 1)


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: int = 8000) -> bytes:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes()


def channels(pcm: bytes) -> tuple[np.ndarray, np.ndarray]:
    both = np.frombuffer(pcm, dtype="<i2").reshape(-1, 2)
    return both[:, 0], both[:, 1]


def loud(samples: np.ndarray, start_s: float, end_s: float) -> bool:
    part = samples[round(start_s * RATE) : round(end_s * RATE)].astype(np.float64)
    return bool(part.size) and float(np.sqrt(np.mean(part**2))) > 1000


def silent(samples: np.ndarray, start_s: float, end_s: float) -> bool:
    part = samples[round(start_s * RATE) : round(end_s * RATE)]
    return bool(part.size) and int(np.abs(part).max()) == 0


def test_caller_by_sample_count_agent_at_release_silence_between():
    mixer = StereoMixer(RATE, started=100.0, caller_format=MONO16, agent_rate=24_000)
    # Caller: 2 s in 20 ms chunks, each arriving as it ends (real time), speech in 0.5-1.5 s.
    speech = tone(1.0, RATE)
    caller = bytes(RATE) + speech + bytes(RATE)  # 0.5 s silence, 1 s speech, 0.5 s silence
    for i in range(100):
        mixer.caller_audio(100.0 + (i + 1) * 0.02, caller[i * 640 : (i + 1) * 640])
    # Agent: 1 s of reply released from t = 2.5 s on, 100 ms chunks a bit ahead of playback.
    reply = tone(1.0, 24_000, 220)
    for i in range(10):
        mixer.agent_audio(102.5 + i * 0.09, reply[i * 4800 : (i + 1) * 4800])
    out = mixer.commit(103.0) + mixer.finish(104.0)
    left, right = channels(out)
    assert len(left) == 4 * RATE  # to the end of the stream at t = 4 s
    assert silent(left, 0, 0.49) and loud(left, 0.55, 1.45) and silent(left, 1.51, 4)
    assert silent(right, 0, 2.49) and loud(right, 2.52, 3.48) and silent(right, 3.52, 4)


def test_barge_in_drops_agent_audio_released_ahead_of_playback():
    mixer = StereoMixer(RATE, started=0.0, caller_format=None, agent_rate=RATE)
    mixer.agent_audio(1.0, tone(0.3, RATE))  # released 300 ms ahead...
    mixer.cut(1.1)  # ...but the caller barged in 100 ms later: the client drops the rest
    left, right = channels(mixer.finish(2.0))
    assert loud(right, 1.0, 1.09) and silent(right, 1.11, 2.0)
    assert silent(left, 0, 2.0)


def test_a_pause_in_sending_is_silence_and_fast_senders_move_the_clock():
    mixer = StereoMixer(RATE, started=0.0, caller_format=MONO16, agent_rate=RATE)
    mixer.caller_audio(0.5, tone(0.5, RATE))  # on time
    mixer.caller_audio(3.0, tone(0.5, RATE))  # after 2 s without audio: it ends at 3.0
    left, _ = channels(mixer.finish(3.0))
    assert loud(left, 0.01, 0.49) and silent(left, 0.51, 2.49) and loud(left, 2.51, 2.99)

    fast = StereoMixer(RATE, started=0.0, caller_format=MONO16, agent_rate=RATE)
    fast.caller_audio(0.1, tone(2.0, RATE))  # 2 s of audio in 0.1 s
    fast.agent_audio(0.2, tone(0.5, RATE, 220))  # the reply comes after what was heard
    left, right = channels(fast.finish(0.3))
    assert loud(left, 0.01, 1.99) and silent(right, 0, 1.99) and loud(right, 2.01, 2.49)


def test_stereo_resampled_caller_and_whole_utterances_land_on_the_left():
    stereo48 = PcmFormat(48_000, 2)
    mixer = StereoMixer(RATE, started=0.0, caller_format=stereo48, agent_rate=24_000)
    mono = np.frombuffer(tone(1.0, 48_000), dtype="<i2")
    mixer.caller_audio(1.0, np.repeat(mono, 2).astype("<i2").tobytes())
    mixer.caller_utterance(3.0, tone(1.0, RATE))  # uploaded at 3 s: spoken from 2 s
    left, right = channels(mixer.finish(3.0))
    assert len(left) == 3 * RATE
    assert loud(left, 0.05, 0.95) and silent(left, 1.01, 1.99) and loud(left, 2.05, 2.95)
    assert silent(right, 0, 3)


def vm_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_ten_minutes_of_call_keep_memory_flat_and_decode_to_ten_minutes(tmp_path):
    """10 minutes of caller (16 kHz) and agent (24 kHz) audio pushed as fast as the writer
    takes it, on a simulated real-time clock: RSS after the first minute and at the end
    differ by a few MB at most (the whole call would be ~38 MB), and the file is 10 minutes."""
    now = [0.0]
    writer = RecordingWriter()
    finished = threading.Event()
    path = tmp_path / "long.wav"
    rec = CallRecorder(writer, path, rate=RATE, caller_format=MONO16, agent_rate=24_000,
                       clock=lambda: now[0], on_finished=lambda f: finished.set())  # fmt: skip
    caller_chunk = np.frombuffer(tone(0.02, RATE), dtype="<i2")
    agent_chunk = np.frombuffer(tone(0.02, 24_000, 220), dtype="<i2")
    rss = {}
    for i in range(30_000):  # 20 ms each
        now[0] = (i + 1) * 0.02
        rec.caller_audio(caller_chunk.tobytes())  # fresh bytes each time, as a client's are
        rec.agent_audio(agent_chunk.tobytes())
        if i % 1000 == 999:
            writer.barrier().result(30)  # keep the queue short, as real time would
        if i == 2999:
            gc.collect()
            rss["after_1_min"] = vm_rss_kib()
    writer.barrier().result(30)
    gc.collect()
    rss["after_10_min"] = vm_rss_kib()
    rec.close().result(30)
    writer.stop(30)
    assert finished.is_set()
    assert sum(rec.dropped_bytes.values()) == 0
    grew_mib = (rss["after_10_min"] - rss["after_1_min"]) / 1024
    assert grew_mib < 4, rss

    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, RATE)
        assert abs(wav.getnframes() / RATE - 600) < 0.05
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.channels == 2
        samples = sum(frame.samples for frame in container.decode(stream))
    assert abs(samples / RATE - 600.0) < 0.05


def test_audio_the_writer_had_to_drop_becomes_silence_of_its_length():
    mixer = StereoMixer(RATE, started=0.0, caller_format=MONO16, agent_rate=RATE)
    mixer.caller_audio(0.5, tone(0.5, RATE))
    mixer.caller_audio(1.5, tone(0.5, RATE), skipped=2 * RATE // 2)  # 0.5 s lost before it
    left, _ = channels(mixer.finish(1.5))
    assert len(left) == round(1.5 * RATE)
    assert loud(left, 0.01, 0.49) and silent(left, 0.51, 0.99) and loud(left, 1.01, 1.49)
