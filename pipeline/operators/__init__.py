"""The stages of a voice session, in data-path order: vad -> stt -> chat -> tts -> output."""
