"""Where a recording's audio goes on its timeline, and the stereo frames that come out of it.

Why a clock of its own: caller audio arrives as a stream of samples (its sample count is its
time), agent audio is released by the output stage at playback pace, and neither says when it
played relative to the other. So the mixer keeps one timeline, in frames at the recording rate,
and places each item by when it reached the session (`t`, monotonic seconds):

- clock(t): real time since the stream started, but never behind the caller audio received
  (a client sending faster than real time moves the clock along with its samples);
- caller stream audio: contiguous, by its sample count, unless it fell more than `gap_s`
  behind the clock (the client stopped sending for a while): it then resumes ending at
  clock(t), the pause silent;
- a whole caller utterance (an uploaded recording): ending at clock(t), when it arrived;
- agent audio: at clock(t), the time it was released, or right after the agent audio before
  it (paced chunks of one reply are contiguous), silence in between;
- a cut (barge-in): agent audio placed beyond clock(t) is dropped, the client flushes it
  unheard;
- frames before min(clock, max(caller end, clock - gap_s)) can no longer change: `commit`
  hands them out, so what is held in memory is about `gap_s` plus the output lead.

Left channel caller, right channel agent; 16-bit PCM. Used only by the writer thread.
"""

from __future__ import annotations

import numpy as np

from pipeline.audio import PIPELINE_RATE, PcmFormat, StreamResampler

GAP_S = 1.0  # caller audio this far behind real time is a pause in sending, not jitter
UTTERANCE_FORMAT = PcmFormat(PIPELINE_RATE, 1)  # VoiceSession.push_utterance's format


class Track:
    """One channel's samples not yet written, starting at the file's current end.

    Positions are absolute frames. A resampler holds back a few samples (its delay), so where
    the track's stream really ends (`stream_end`) is counted from the input, not from what
    came out yet: contiguous audio is then recognised as such and never gains gaps.
    """

    def __init__(self, src: PcmFormat, rate: int) -> None:
        self.src, self.rate = src, rate
        self.pending = bytearray()  # int16 mono at `rate`
        self._resampler = StreamResampler(src, rate)
        self._start = 0  # where the resampler's stream began
        self._frames_in = 0  # source frames fed to it since
        self._held = False  # the resampler may hold samples back

    def end(self, written: int) -> int:
        """Where the samples already out of the resampler end."""
        return written + len(self.pending) // 2

    def stream_end(self, written: int) -> int:
        """Where this track's audio ends once the resampler has given everything back."""
        fed = self._start + self._frames_in * self.rate // self.src.sample_rate
        return max(self.end(written), fed)

    def frames_of(self, nbytes: int) -> int:
        """Frames at the recording rate that `nbytes` of source audio become."""
        return nbytes // self.src.frame_bytes * self.rate // self.src.sample_rate

    def place(self, written: int, pos: int, pcm: bytes) -> None:
        """Source `pcm` at frame `pos`: where the stream ends, or later (the stream then ends
        where it was and silence fills up to `pos`)."""
        if pos > self.stream_end(written):
            self.flush_tail()
            self.pending.extend(bytes(2 * max(0, pos - self.end(written))))
            self._start, self._frames_in = self.end(written), 0
        self._frames_in += len(pcm) // self.src.frame_bytes
        self.pending.extend(self._resampler.process(pcm))
        self._held = self.src.sample_rate != self.rate  # a pass-through holds nothing

    @property
    def held(self) -> bool:
        return self._held

    def place_whole(self, written: int, pos: int, pcm: bytes) -> None:
        """Already at the recording rate (a one-off conversion), at `pos` or this track's end."""
        self.flush_tail()
        self.pending.extend(bytes(2 * max(0, pos - self.end(written))))
        self.pending.extend(pcm)
        self._start, self._frames_in = self.end(written), 0

    def cut(self, written: int, pos: int) -> None:
        """Forget everything from `pos` on, and the resampler's unreleased tail."""
        del self.pending[2 * max(0, pos - written) :]
        if self._held:
            self._resampler, self._held = StreamResampler(self.src, self.rate), False
        self._start, self._frames_in = self.end(written), 0

    def flush_tail(self) -> None:
        if self._held:
            self.pending.extend(self._resampler.flush())
            self._resampler, self._held = StreamResampler(self.src, self.rate), False

    def take(self, frames: int) -> np.ndarray:
        """The next `frames` samples, silence where this track has none yet."""
        out = np.zeros(frames, dtype="<i2")
        n = min(frames, len(self.pending) // 2)
        out[:n] = np.frombuffer(self.pending, dtype="<i2", count=n)
        del self.pending[: 2 * n]
        return out


class StereoMixer:
    def __init__(
        self,
        rate: int,
        started: float,
        caller_format: PcmFormat | None,
        agent_rate: int,
        gap_s: float = GAP_S,
    ) -> None:
        self.rate = rate
        self.written = 0  # frames handed out by commit/finish
        self.gap = round(gap_s * rate)
        self._anchor_t, self._anchor_pos = started, 0
        self.caller = Track(caller_format or UTTERANCE_FORMAT, rate)
        self.agent = Track(PcmFormat(agent_rate, 1), rate)

    def clock(self, t: float) -> int:
        return self._anchor_pos + max(0, int((t - self._anchor_t) * self.rate))

    def _caller_moved(self, t: float) -> None:
        end = self.caller.stream_end(self.written)
        if end > self.clock(t):  # ahead of real time: the caller's samples are the clock
            self._anchor_t, self._anchor_pos = t, end

    def caller_audio(self, t: float, pcm: bytes, skipped: int = 0) -> None:
        """Streamed caller audio in its own format; `skipped` bytes before it were lost."""
        track, clock = self.caller, self.clock(t)
        end = track.stream_end(self.written)
        n, lost = track.frames_of(len(pcm)), track.frames_of(skipped)
        if end + lost + n < clock - self.gap:
            pos = clock - n  # the client paused sending: this chunk ends now
        else:
            pos = end + lost
        track.place(self.written, max(pos, end), pcm)
        self._caller_moved(t)

    def caller_utterance(self, t: float, pcm16k: bytes) -> None:
        """A whole recorded utterance (16 kHz mono): it ends when it arrived."""
        pcm = StreamResampler(UTTERANCE_FORMAT, self.rate).process(pcm16k, last=True)
        pos = self.clock(t) - len(pcm) // 2
        self.caller.place_whole(self.written, pos, pcm)
        self._caller_moved(t)

    def agent_audio(self, t: float, pcm: bytes, skipped: int = 0) -> None:
        """Agent audio as released to the client, at the session's output rate."""
        track = self.agent
        pos = max(track.stream_end(self.written) + track.frames_of(skipped), self.clock(t))
        track.place(self.written, pos, pcm)

    def cut(self, t: float) -> None:
        """Barge-in at `t`: agent audio released ahead of playback is not heard."""
        self.agent.cut(self.written, self.clock(t))

    def settled(self, t: float) -> int:
        """How many frames, as of `t`, can no longer change and are not written yet."""
        clock, written = self.clock(t), self.written
        caller, agent = self.caller, self.agent
        for track in (caller, agent):
            if track.stream_end(written) < clock - self.gap:
                track.flush_tail()  # long quiet: its next audio starts a new stream anyway
        final = min(clock, max(caller.end(written), clock - self.gap))
        if agent.held:
            final = min(final, agent.end(written))  # its resampler still holds samples
        return max(0, final - written)

    def commit(self, t: float) -> bytes:
        """The interleaved frames that can no longer change as of `t` (maybe none)."""
        return self._take(self.settled(t))

    def finish(self, t: float) -> bytes:
        """Everything left, up to the end of the stream at `t` (trailing silence included)."""
        self.caller.flush_tail()
        self.agent.flush_tail()
        last = max(self.caller.end(self.written), self.agent.end(self.written), self.clock(t))
        return self._take(last - self.written)

    def _take(self, frames: int) -> bytes:
        if frames <= 0:
            return b""
        out = np.empty(2 * frames, dtype="<i2")
        out[0::2] = self.caller.take(frames)
        out[1::2] = self.agent.take(frames)
        self.written += frames
        return out.tobytes()
