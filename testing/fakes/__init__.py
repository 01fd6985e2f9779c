"""Test doubles that speak real wire protocols (see openai_server.py)."""

from testing.fakes.openai_server import AudioInfo, FakeOpenAI, Fault, Recorded

__all__ = ["AudioInfo", "FakeOpenAI", "Fault", "Recorded"]
