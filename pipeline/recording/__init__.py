"""Call recordings: a live stream's caller and agent audio, as one stereo WAV file.

`CallRecorder` is the session's tap (cheap, never blocks the event loop); a `RecordingWriter`
thread places the audio on a common clock (`mixer`) and writes it out as it streams.
"""

from pipeline.recording.mixer import StereoMixer
from pipeline.recording.recorder import CallRecorder, Finished
from pipeline.recording.writer import RecordingWriter

__all__ = ["CallRecorder", "Finished", "RecordingWriter", "StereoMixer"]
