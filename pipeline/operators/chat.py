"""Chat stage: a user turn in, streamed reply text out (to the client) and sentences (to TTS).

With tools, a reply is a loop: stream the model; if it asked for tool calls, run them (in
parallel, through the session's ToolRunner) and stream again with their results, up to the
step limit. Text said before a call is spoken at once, so the caller hears it while the tool
runs; a filler line covers a slow tool. A reply cut mid-call (barge-in) never runs that call.
"""

from __future__ import annotations

import asyncio
import logging

from pipeline.conversation import Conversation
from pipeline.events import EventSink
from pipeline.frames import EndOfTurn, Sentence, TurnStart
from pipeline.operator import Operator, TurnOperator
from pipeline.providers.base import ChatModel, ChatTools, ProviderError
from pipeline.text import SentenceSplitter, clean_for_speech
from pipeline.tools.lifecycle import CallAssembler, ToolCallDelta
from pipeline.tools.runner import ToolRunner
from pipeline.tools.spec import END_CALL, ToolOptions
from pipeline.turn import State, ToolStep, Turn, now

log = logging.getLogger(__name__)
NO_TOOLS = ToolOptions()


class ChatOperator(TurnOperator):
    inbox_size = 4

    def __init__(
        self,
        chat: ChatModel,
        conversation: Conversation,
        events: EventSink,
        *,
        downstream: Operator | None,
        speak: bool = True,
        tools: ToolRunner | None = None,
        tool_options: ToolOptions = NO_TOOLS,
    ) -> None:
        super().__init__(downstream)
        self.chat, self.conversation, self.events = chat, conversation, events
        self.speak = speak
        self.tools, self.tool_options = tools, tool_options

    def _offer(self, step: int) -> ChatTools | None:
        options = self.tool_options
        if self.tools is None or not options.specs:
            return None
        if step >= options.max_steps:
            choice = "none"  # the last step must answer in words
        else:  # only the first step is forced: a forced choice every step would never end
            choice = options.choice if step == 1 else "auto"
        return ChatTools(options.specs, choice)

    async def handle(self, item: TurnStart) -> None:  # type: ignore[override]
        turn = item.turn
        await self.events.set_state(State.THINKING)
        splitter = SentenceSplitter()
        turn.llm_request_at = now()
        step = 0
        while True:
            step += 1
            assembler = CallAssembler()
            try:
                messages = self.conversation.messages()
                messages += self.conversation.reply_messages(turn, turn.agent_text)
                async for piece in self.chat.stream(messages, self._offer(step)):
                    if isinstance(piece, ToolCallDelta):
                        assembler.push(piece)
                        continue
                    if turn.llm_first_token_at is None:
                        turn.llm_first_token_at = now()
                    if turn.steps and _runs_on(turn.agent_text, piece):
                        piece = " " + piece  # a new step's words: not glued to the last ones
                    turn.agent_text += piece
                    turn.llm_pieces += 1
                    await self.events.text_delta(turn, piece)
                    for sentence in splitter.push(piece):
                        await self._speak(turn, sentence)
            except asyncio.CancelledError:
                if assembler.pending and self.tools is not None:  # cut before it was complete
                    await self.tools.incomplete(turn, assembler.names(), step)
                raise
            except ProviderError as exc:
                turn.failed = True
                await self.events.error(exc.code, str(exc), turn.index)
                break
            except Exception as exc:  # a provider bug must still end the turn, not strand it
                log.exception("chat provider %s failed", self.chat.name)
                turn.failed = True
                msg = f"chat provider failed: {exc}"
                await self.events.error("provider_failed", msg, turn.index)
                break
            for sentence in splitter.flush():  # what was said before the calls is heard now
                await self._speak(turn, sentence)
            if not assembler.pending or self.tools is None:
                break
            if not await self._run_tools(turn, assembler, step):
                break
        turn.llm_done_at = now()
        await self.forward(EndOfTurn(turn))

    async def _run_tools(self, turn: Turn, assembler: CallAssembler, step: int) -> bool:
        """Run one step's calls; True if the model should be asked again with the results."""
        assert self.tools is not None
        calls = assembler.complete(self.tools.specs, turn.index, now(), f"call_{turn.index}_{step}")
        turn.steps.append(ToolStep(len(turn.agent_text), calls))
        waits = await self.tools.begin(turn, calls)
        if waits:
            await self.events.set_state(State.THINKING)
            results = asyncio.shield(asyncio.gather(*waits))
            options = self.tool_options
            if options.filler_after_s > 0 and options.filler_text:
                try:
                    await asyncio.wait_for(asyncio.shield(results), options.filler_after_s)
                except TimeoutError:
                    await self._filler(turn, options.filler_text)
            await results
        hanging_up = any(c.name == END_CALL.name for c in calls)
        return not hanging_up and step < self.tool_options.max_steps

    async def _filler(self, turn: Turn, text: str) -> None:
        """Covers a slow tool: said and kept as part of the reply (after the calls it covers)."""
        piece = text if not turn.agent_text or turn.agent_text[-1:].isspace() else " " + text
        turn.agent_text += piece + " "
        await self.events.text_delta(turn, piece + " ")
        await self._speak(turn, text)

    async def _speak(self, turn, text: str) -> None:
        spoken = clean_for_speech(text) if self.speak else ""
        if spoken:
            await self.forward(Sentence(turn, spoken))


def _runs_on(text: str, piece: str) -> bool:
    return bool(text) and not text[-1].isspace() and not piece[:1].isspace()
