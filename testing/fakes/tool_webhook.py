"""A webhook tool receiver on 127.0.0.1 for tests: checks each call's signature, records it,
and replies as scripted (a JSON body, an HTTP status, or a hold until the test releases it)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from pipeline.tools.webhook import SIGNATURE_HEADER, verify


@dataclass
class Received:
    body: dict[str, Any]
    signed: bool  # the signature checked out with the test's secret


@dataclass
class ToolWebhook:
    secret: bytes
    replies: list[Any] = field(default_factory=list)  # JSON bodies, or ints (statuses), popped
    hold: asyncio.Event | None = None  # when set: every call waits for it (a slow tool)
    calls: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tools/"

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/tools/{name}", self._serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        signed = verify(self.secret, raw, request.headers.get(SIGNATURE_HEADER, ""))
        self.calls.append(Received(json.loads(raw), signed))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        reply = self.replies.pop(0) if self.replies else {"ok": True}
        if isinstance(reply, int):
            return web.json_response({"error": "scripted"}, status=reply)
        return web.json_response(reply)
