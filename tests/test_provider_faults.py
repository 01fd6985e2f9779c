"""Provider trouble: retried where it helps, reported as an error event, the session goes on."""

from __future__ import annotations

from voiceagent.v1 import converse_pb2

from testing.converse_client import Conversation, config, speech_requests, text
from testing.fakes import Fault


async def test_rate_limit_is_retried_after_retry_after(agent, fake_openai):
    fake_openai.inject("chat", Fault.status(429, retry_after=0.05))
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Hello"))
    done = await convo.until("turn_completed")
    assert done.turn_completed.agent_text == "You said: Hello."
    assert fake_openai.calls["chat"] == 2 and not convo.of("error")
    convo.close_input()
    await convo.rest()


async def test_chat_failure_reports_error_and_next_turn_works(agent, fake_openai):
    fake_openai.inject("chat", Fault.status(500), Fault.status(500))  # initial try + 1 retry
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Hello"))
    error = await convo.until("error")
    assert error.error.code == converse_pb2.ERROR_CODE_PROVIDER_FAILED
    assert error.error.message == "chat provider failed: HTTP 500: injected"
    assert error.error.turn_index == 1
    failed = await convo.until("turn_completed")
    assert failed.turn_completed.agent_text == ""
    convo.send(text("Hello again"))
    ok = await convo.until("turn_completed")
    assert ok.turn_completed.agent_text == "You said: Hello again."
    convo.close_input()
    await convo.rest()


async def test_stt_stall_times_out_and_session_goes_on(start_server, fake_openai):
    server = await start_server(openai_timeout_s=0.3, openai_max_retries=0)
    fake_openai.inject("transcriptions", Fault.stall())
    convo = Conversation(server.stub, config())
    convo.send(*speech_requests("Hello there"))
    error = await convo.until("error")
    assert "speech-to-text provider failed: timed out" in error.error.message
    convo.send(text("Typed instead"))
    done = await convo.until("turn_completed")
    assert done.turn_completed.agent_text == "You said: Typed instead."
    convo.close_input()
    await convo.rest()


async def test_tts_connection_drop_reports_error_and_keeps_text(agent, fake_openai):
    fake_openai.inject("speech", Fault.drop(), Fault.drop())  # initial try + 1 retry
    convo = Conversation(agent.stub, config(input_rate=None))
    convo.send(text("Hello"))
    error = await convo.until("error")
    assert error.error.message.startswith("text-to-speech provider failed")
    done = await convo.until("turn_completed")
    assert done.turn_completed.agent_text  # the text was delivered even though audio broke
    convo.close_input()
    await convo.rest()


async def test_openai_role_without_api_key_says_how_to_fix_it(start_server):
    server = await start_server(fake=None, chat_provider="openai")
    convo = Conversation(server.stub, config(input_rate=None))
    started = await convo.until("session_started")
    assert started.session_started.providers.chat == "unconfigured"
    convo.send(text("Hello"))
    error = await convo.until("error")
    assert error.error.code == converse_pb2.ERROR_CODE_PROVIDER_NOT_CONFIGURED
    assert "OPENAI_API_KEY" in error.error.message
    convo.close_input()
    await convo.rest()
