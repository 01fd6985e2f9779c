"""Scenario modules; importing them registers them, in this (= table) order."""

from bench.scenarios import barge_in, live_sessions, pipeline_overhead, transport, voice_to_voice

__all__ = ["pipeline_overhead", "transport", "live_sessions", "voice_to_voice", "barge_in"]
