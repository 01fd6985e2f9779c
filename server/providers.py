"""Builds the providers for each role from settings."""

from __future__ import annotations

import logging

import openai

from pipeline.providers.base import Providers
from pipeline.providers.openai_api import OpenAIChat, OpenAISpeechToText, OpenAITextToSpeech
from pipeline.providers.unconfigured import Unconfigured
from server.config import Settings

log = logging.getLogger(__name__)

NO_KEY = "OPENAI_API_KEY is not set (set it, and OPENAI_BASE_URL for a compatible server)"


def build_providers(settings: Settings) -> Providers:
    if not settings.openai_api_key:
        log.warning("%s: every turn will report an error until it is set.", NO_KEY)
        return Providers(
            stt=Unconfigured("speech-to-text", NO_KEY),
            chat=Unconfigured("chat", NO_KEY),
            tts=Unconfigured("text-to-speech", NO_KEY),
        )
    client = openai.AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,
    )
    return Providers(
        stt=OpenAISpeechToText(client, settings.stt_model, settings.stt_language),
        chat=OpenAIChat(client, settings.chat_model, settings.chat_max_tokens),
        tts=OpenAITextToSpeech(client, settings.tts_model, settings.tts_voice),
    )
