"""Shared pieces of the fault/fuzz suite (tests/test_fuzz_*.py, test_faults_midturn.py,
test_churn.py): a raw-bytes Converse client, protobuf wire encoding for messages the Python
runtime refuses to build, "the server is still fine" checks and a resource snapshot."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from voiceagent.v1 import converse_pb2

from server.grpc.voice_agent import VoiceAgentService
from testing.converse_client import Conversation, config, text

CONVERSE = "/voiceagent.v1.VoiceAgentService/Converse"
Response = converse_pb2.ConverseResponse
# What a Converse stream may end with when a client sent something wrong: each is documented
# in the proto and carries a message. UNKNOWN and INTERNAL (a server bug), UNAVAILABLE (the
# server fell over) and DEADLINE_EXCEEDED (a hang) are never acceptable here.
DOCUMENTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
STREAM_TIMEOUT = 30.0  # one whole exchange; a hang fails the example instead of the run
# Figures for docs/hardening.md: inputs tried, faults survived, cycles run (printed at the end
# of a pytest run by tests/conftest.py).
STATS: collections.Counter[str] = collections.Counter()


# -- protobuf wire format, by hand ------------------------------------------------------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings, bytes and sub-messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def utf8(value: str) -> bytes:
    """UTF-8, except that lone surrogates become the (invalid) bytes they would encode to:
    what a client in a language without Python's check sends for "\\ud800"."""
    return value.encode("utf-8", "surrogatepass")


def text_request(value: str) -> bytes:
    """ConverseRequest{text: UserText{text: value}}, even where protobuf refuses the str."""
    return field_bytes(3, field_bytes(1, utf8(value)))


def config_request(base: converse_pb2.ConverseRequest, **strings: str) -> bytes:
    """A config request with SessionConfig string fields set by hand (any str, surrogates
    too). A sub-message sent twice is merged by the parser, so these override `base`."""
    numbers = {"session_id": 1, "customer_id": 2, "voice": 5, "instructions": 6}
    extra = b"".join(field_bytes(numbers[k], utf8(v)) for k, v in strings.items())
    return base.SerializeToString() + (field_bytes(1, extra) if extra else b"")


# -- a Converse stream of raw bytes -------------------------------------------------------------
@dataclass
class Outcome:
    events: list[Response] = field(default_factory=list)
    code: grpc.StatusCode | None = None
    details: str = ""
    seconds: float = 0.0

    def kinds(self) -> list[str]:
        return [e.WhichOneof("event") for e in self.events]

    @property
    def session_id(self) -> str:
        for e in self.events:
            if e.WhichOneof("event") == "session_started":
                return e.session_started.session_id
        return ""


class RawConversation:
    """A Converse call whose requests are bytes put on the wire as they are."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method = channel.stream_stream(
            CONVERSE, request_serializer=lambda b: b, response_deserializer=Response.FromString
        )
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.call = method(self._requests())
        self.started = time.monotonic()

    async def _requests(self):
        while (item := await self._outbox.get()) is not None:
            yield item

    def send(self, *requests: bytes | converse_pb2.ConverseRequest) -> None:
        for r in requests:
            self._outbox.put_nowait(r if isinstance(r, bytes) else r.SerializeToString())

    def close_input(self) -> None:
        self._outbox.put_nowait(None)

    async def next(self, timeout: float = STREAM_TIMEOUT) -> Response | None:
        event = await asyncio.wait_for(self.call.read(), timeout)
        return None if event is grpc.aio.EOF else event

    async def outcome(self, timeout: float = STREAM_TIMEOUT) -> Outcome:
        """Read to the end of the stream (bounded): the events and the final status."""
        out = Outcome()
        try:
            async with asyncio.timeout(timeout):
                while (event := await self.call.read()) is not grpc.aio.EOF:
                    out.events.append(event)
        except grpc.aio.AioRpcError:
            pass  # the status is read below, the same for both endings
        except TimeoutError:
            self.call.cancel()
            raise AssertionError(
                f"Converse did not end within {timeout} s; events so far: {out.kinds()}"
            ) from None
        out.code, out.details = await self.call.code(), await self.call.details()
        out.seconds = time.monotonic() - self.started
        return out


# grpc-aio's client (grpcio 1.85, aio/_call.py `_write`) races: when the server ends a stream
# while the client's request iterator is still writing, the failed write sets the call's status
# to INTERNAL "Internal error from Core" on the client, over the status the server sent. The
# server's side is what these tests judge; the client-only INTERNAL is counted, not failed.
CLIENT_WRITE_RACE = (grpc.StatusCode.INTERNAL, "Internal error from Core")


@dataclass(frozen=True)
class ServerEnd:
    """How the server's Converse handler ended one call."""

    code: grpc.StatusCode  # what the server set: OK when it set nothing
    details: str
    escaped: str  # an exception that escaped the handler other than abort ("" if none)


class ConverseObserver:
    """Records, on the server, how each Converse call ended (the handler's own view)."""

    def __init__(self) -> None:
        self.ends: list[ServerEnd] = []

    def install(self, monkeypatch) -> None:
        """Before the server starts: grpc binds the servicer's methods when it registers."""
        original = VoiceAgentService.Converse
        ends = self.ends

        async def Converse(service, requests, context) -> None:  # noqa: N802 (grpc's name)
            escaped = ""
            try:
                await original(service, requests, context)
            except asyncio.CancelledError:
                escaped = "CancelledError"
                raise
            except grpc.aio.AbortError:
                raise
            except BaseException as exc:
                escaped = type(exc).__name__
                raise
            finally:
                code = context.code() or grpc.StatusCode.OK
                ends.append(ServerEnd(code, context.details() or "", escaped))

        monkeypatch.setattr(VoiceAgentService, "Converse", Converse)

    async def next_end(self, timeout: float = 10.0) -> ServerEnd:
        """The oldest recorded end, waiting (bounded) for the handler to finish."""
        async with asyncio.timeout(timeout):
            while not self.ends:
                await asyncio.sleep(0.01)
        return self.ends.pop(0)


def assert_documented(out: Outcome, end: ServerEnd | None = None) -> None:
    """The server ended the call with a documented status and a message; the client saw it
    (or grpc-aio's client-side write race, see CLIENT_WRITE_RACE)."""
    if end is not None:
        assert not end.escaped, f"{end.escaped} escaped the Converse handler ({end})"
        assert end.code in DOCUMENTED, (end, out.kinds())
        if end.code != grpc.StatusCode.OK:
            assert end.details.strip(), f"{end.code} without a message"
        if (out.code, out.details) == CLIENT_WRITE_RACE and end.code != out.code:
            STATS["grpc client-only INTERNAL (grpc-aio write race)"] += 1
        else:
            assert (out.code, out.details) == (end.code, end.details), (out, end)
    else:
        assert out.code in DOCUMENTED, (out.code, out.details, out.kinds())
        if out.code != grpc.StatusCode.OK:
            assert out.details and out.details.strip(), f"{out.code} without a message"
    for e in out.events:  # an error event says what happened
        if e.WhichOneof("event") == "error":
            assert e.error.message, e


# -- "the server is still fine" -------------------------------------------------------------------
async def wait_no_live(server, timeout: float = 10.0) -> None:
    """No session is left live (bounded wait: a session may take a moment to close)."""
    try:
        await asyncio.wait_for(server.live.wait_empty(), timeout)
    except TimeoutError:
        ids = [s.id for s in server.live.sessions()]
        raise AssertionError(f"sessions still live after {timeout} s: {ids}") from None


async def text_turn(stub, words: str = "Are you still there", session_id: str = "") -> str:
    """A Converse stream that completes one text turn; returns the session id."""
    convo = Conversation(stub, config(input_rate=None, session_id=session_id))
    started = await convo.until("session_started")
    convo.send(text(words))
    done = await convo.until("turn_completed")
    assert done.turn_completed.agent_text == f"You said: {words}.", convo.kinds()
    convo.close_input()
    await convo.rest()
    assert (await convo.call.code()) == grpc.StatusCode.OK
    return started.session_started.session_id


# -- resources: fds, threads, tasks, RSS ------------------------------------------------------------
@dataclass(frozen=True)
class Usage:
    fds: int
    threads: int
    tasks: int
    rss_mb: float

    def over(self, base: Usage, fds: int, threads: int, tasks: int, rss_mb: float) -> list[str]:
        """What is above `base` by more than its tolerance."""
        out = []
        for name, slack in (("fds", fds), ("threads", threads), ("tasks", tasks)):
            if getattr(self, name) > getattr(base, name) + slack:
                out.append(f"{name} {getattr(base, name)} -> {getattr(self, name)}")
        if self.rss_mb > base.rss_mb + rss_mb:
            out.append(f"rss {base.rss_mb:.0f} MB -> {self.rss_mb:.0f} MB")
        return out


def usage() -> Usage:
    with open("/proc/self/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return Usage(
        fds=len(os.listdir("/proc/self/fd")),
        threads=threading.active_count(),
        tasks=len(asyncio.all_tasks()),
        rss_mb=rss_kb / 1024,
    )


async def settle(
    base: Usage,
    *,
    fds: int = 8,
    threads: int = 2,
    tasks: int = 4,
    rss_mb: float = 40.0,
    timeout: float = 20.0,
    poll: Callable[[], Usage] = usage,
) -> Usage:
    """Poll until usage is back within tolerance of `base`; fail with the numbers if not."""
    deadline = time.monotonic() + timeout
    while True:
        now = poll()
        problems = now.over(base, fds, threads, tasks, rss_mb)
        if not problems:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"not back to baseline after {timeout} s: {problems}")
        await asyncio.sleep(0.05)
