"""Webhook tools: the call POSTed as signed JSON, the JSON reply used as the tool's result.

The receiver checks `X-Voiceagent-Signature: t=<unix seconds>,v1=<hex>` where the hex is
HMAC-SHA256(secret, "<t>.<body>"), so it knows the call came from this server and is fresh.
A failed POST is retried only for tools declared idempotent: a booking or a payment must not
happen twice because a reply was slow.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import httpx

from pipeline.tools.lifecycle import ToolCall

SIGNATURE_HEADER = "X-Voiceagent-Signature"
MAX_REPLY_BYTES = 256 * 1024
RETRY_DELAYS_S = (0.2, 0.8)  # idempotent tools only: three attempts in all


class ToolFailed(Exception):
    """The tool ran and failed; the message is what the model (and the client) are told."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, *, tolerance_s: float = 300.0) -> bool:
    """For receivers (and tests): is `header` a fresh, valid signature of `body`?"""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), header)


class WebhookCaller:
    def __init__(self, client: httpx.AsyncClient, secret: bytes) -> None:
        self.client, self.secret = client, secret

    async def call(self, call: ToolCall, session_id: str) -> str:
        """POST the call; the reply body (JSON) is the result. Raises ToolFailed."""
        assert call.spec is not None
        body = json.dumps(
            {
                "call_id": call.call_id,
                "name": call.name,
                "arguments": json.loads(call.arguments or "{}"),
                "session_id": session_id,
                "turn_index": call.turn_index,
            }
        ).encode()
        attempts = len(RETRY_DELAYS_S) + 1 if call.spec.idempotent else 1
        for attempt in range(attempts):
            try:
                return await self._post(call.spec.url, body)
            except ToolFailed as exc:
                if attempt + 1 >= attempts or not exc.retryable:
                    raise
            await asyncio.sleep(RETRY_DELAYS_S[attempt])
        raise AssertionError("unreachable")

    async def _post(self, url: str, body: bytes) -> str:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
        }
        try:
            async with self.client.stream("POST", url, content=body, headers=headers) as reply:
                data = b""
                async for chunk in reply.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_REPLY_BYTES:
                        raise ToolFailed(f"webhook reply is over {MAX_REPLY_BYTES} bytes")
                status = reply.status_code
        except httpx.HTTPError as exc:
            message = f"webhook request failed: {type(exc).__name__}"
            raise ToolFailed(message, retryable=True) from None
        if status >= 300:
            retryable = status >= 500 or status == 429
            raise ToolFailed(f"webhook returned HTTP {status}", retryable=retryable)
        text = data.decode("utf-8", errors="replace")
        try:
            json.loads(text)
        except ValueError:
            raise ToolFailed("webhook reply is not JSON") from None
        return text
