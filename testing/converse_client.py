"""A Converse client for tests: send requests whenever, await events by kind."""

from __future__ import annotations

import asyncio

import grpc
from voiceagent.v1 import audio_pb2, converse_pb2

from testing.speech import frames, speech_pcm

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16
Request = converse_pb2.ConverseRequest
Event = converse_pb2.ConverseResponse
TIMEOUT = 30.0  # generous upper bound for one wait; a hang fails instead of blocking CI


def config(
    input_rate: int | None = 16_000,
    channels: int = 1,
    output_rate: int = 24_000,
    **fields,
) -> Request:
    cfg = converse_pb2.SessionConfig(**fields)
    if input_rate is not None:
        cfg.input_format.CopyFrom(
            audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=input_rate, channels=channels)
        )
    cfg.output_format.CopyFrom(
        audio_pb2.AudioFormat(encoding=LINEAR16, sample_rate_hz=output_rate, channels=1)
    )
    return Request(config=cfg)


def text(value: str) -> Request:
    return Request(text=converse_pb2.UserText(text=value))


def control(action: int) -> Request:
    return Request(control=converse_pb2.Control(action=action))


def speech_requests(words: str, rate: int = 16_000, channels: int = 1, **kw) -> list[Request]:
    pcm = speech_pcm(words, sample_rate=rate, channels=channels, **kw)
    return [Request(audio=f) for f in frames(pcm, rate, channels, 20)]


class Conversation:
    """One Converse stream driven by a test."""

    def __init__(self, stub, first: Request | None = None) -> None:
        self._outbox: asyncio.Queue[Request | None] = asyncio.Queue()
        self.call = stub.Converse(self._requests())
        self.events: list[Event] = []
        if first is not None:
            self._outbox.put_nowait(first)

    async def _requests(self):
        while (request := await self._outbox.get()) is not None:
            yield request

    def send(self, *requests: Request) -> None:
        for r in requests:
            self._outbox.put_nowait(r)

    def close_input(self) -> None:
        self._outbox.put_nowait(None)

    async def next(self) -> Event | None:
        event = await asyncio.wait_for(self.call.read(), TIMEOUT)
        if event is grpc.aio.EOF:
            return None
        self.events.append(event)
        return event

    async def until(self, kind: str, predicate=lambda e: True) -> Event:
        """Read events until one of `kind` matching `predicate`; fails on end of stream."""
        while True:
            event = await self.next()
            assert event is not None, f"stream ended before a {kind} event: {self.kinds()}"
            if event.WhichOneof("event") == kind and predicate(getattr(event, kind)):
                return event

    async def rest(self) -> list[Event]:
        """Read to the end of the stream; returns the events read by this call."""
        start = len(self.events)
        while await self.next() is not None:
            pass
        return self.events[start:]

    def kinds(self, events: list[Event] | None = None) -> list[str]:
        return [e.WhichOneof("event") for e in (self.events if events is None else events)]

    def of(self, kind: str) -> list:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]
