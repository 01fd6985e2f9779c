"""Call recordings: stereo WAV files of live streams, listed, downloadable, expired and
handed over to the operator's storage (docs/recordings.md)."""
