"""Server settings for a VoiceServer under test: loopback, free ports, a fake OpenAI.

Shared by the pytest fixtures (tests/conftest.py) and the WebRTC scenarios, which start their
servers outside pytest (testing/webrtc_stack.py).
"""

from __future__ import annotations

from server.config import Settings
from testing.fakes import FakeOpenAI


def test_settings(fake: FakeOpenAI | None, **overrides) -> Settings:
    """Settings for a server on loopback (ports picked by the OS) whose OpenAI is `fake`, or
    no OpenAI at all when `fake` is None; `overrides` are Settings fields."""
    values = dict(
        grpc_host="127.0.0.1",
        grpc_port=0,
        http_host="127.0.0.1",
        http_port=0,
        openai_api_key="test-key" if fake else None,
        openai_base_url=fake.base_url if fake else None,
        openai_max_retries=1,
        openai_timeout_s=5.0,
        vad_stop_ms=400,
        workers=1,
    )
    values.update(overrides)
    return Settings(_env_file=None, **values)


test_settings.__test__ = False  # a helper, not a test, wherever it is imported
