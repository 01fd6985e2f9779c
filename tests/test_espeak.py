"""eSpeak NG synthesizer and the speech helpers built on it."""

from __future__ import annotations

import threading
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.providers.espeak import EspeakSynthesizer, list_voices
from testing.speech import frames, speech_pcm, write_wav

PIZZA = "I want to order a large pepperoni pizza"
LONG = PIZZA + ", with extra cheese and mushrooms, and a bottle of sparkling water on the side."


@pytest.fixture(scope="module")
def synth() -> EspeakSynthesizer:
    return EspeakSynthesizer()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def test_sentence_has_plausible_duration_and_energy(synth):
    audio = synth.synthesize(PIZZA)
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert synth.sample_rate == 22050
    assert 1.5 < len(audio) / synth.sample_rate < 5.0
    assert rms(audio) > 500  # int16 full scale is 32767; silence would be ~0


def test_longer_text_gives_longer_audio(synth):
    assert len(synth.synthesize(LONG)) > 1.5 * len(synth.synthesize(PIZZA))


def test_faster_rate_gives_shorter_audio(synth):
    assert len(synth.synthesize(PIZZA, rate_wpm=300)) < len(synth.synthesize(PIZZA, rate_wpm=120))


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_blank_text_gives_empty_array(synth, text):
    audio = synth.synthesize(text)
    assert audio.dtype == np.int16 and audio.size == 0


def test_unknown_voice_raises(synth):
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        synth.synthesize(PIZZA, voice="no-such-voice")
    with pytest.raises(ValueError, match="unknown eSpeak voice"):
        EspeakSynthesizer(voice="no-such-voice")
    assert synth.synthesize("still works").size > 0  # the failure left the engine usable


def test_list_voices():
    voices = list_voices()
    assert "en-us" in voices and len(voices) > 50


def test_concurrent_synthesis_keeps_results_apart(synth):
    # Different text per thread, so audio leaking between calls would show up as wrong lengths.
    # eSpeak lengths jitter by a few samples run to run, hence the tolerance.
    texts = [PIZZA, LONG] * 4
    expected = {t: len(synth.synthesize(t)) for t in set(texts)}
    start = threading.Barrier(len(texts))

    def run(text: str) -> int:
        start.wait(timeout=30)
        return len(synth.synthesize(text))

    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        lengths = list(pool.map(run, texts))
    for text, n in zip(texts, lengths, strict=True):
        assert n == pytest.approx(expected[text], rel=0.02)


def test_speech_pcm_48k_stereo_is_aligned(synth, tmp_path):
    rate, channels = 48000, 2
    pcm = speech_pcm(PIZZA, sample_rate=rate, channels=channels)
    native = len(synth.synthesize(PIZZA))
    lead, tail = rate * 300 // 1000, rate * 1000 // 1000
    assert len(pcm) % (2 * channels) == 0
    samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels)
    assert len(samples) == pytest.approx(lead + tail + native * rate / 22050, rel=0.02)
    assert np.array_equal(samples[:, 0], samples[:, 1])
    assert not samples[:lead].any() and not samples[-tail:].any()
    assert rms(samples[lead:-tail, 0]) > 500
    assert speech_pcm(PIZZA, sample_rate=rate, channels=channels) is pcm  # cached

    chunks = frames(pcm, rate, channels)  # 20 ms = 960 frames * 2 ch * 2 bytes
    assert all(len(c) == 3840 for c in chunks)
    assert len(chunks) == -(-len(pcm) // 3840)
    assert b"".join(chunks)[: len(pcm)] == pcm

    path = tmp_path / "pizza.wav"
    write_wav(path, pcm, rate, channels)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (48000, 2, 2)
        assert wav.readframes(wav.getnframes()) == pcm
