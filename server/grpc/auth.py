"""Authentication for every gRPC method but health and reflection.

A server interceptor wraps each method's handler: it reads `authorization: Bearer <API key or
client token>` from the call's metadata, asks the core's Authenticator for the caller, and
hands it to the handler through a context variable (`current_caller()`), or ends the call
with UNAUTHENTICATED saying what to send.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from server.auth.authenticator import Authenticator
from server.auth.caller import Caller
from server.grpc.status import abort
from server.sessions.errors import RequestError

HOW = "send gRPC metadata `authorization: Bearer <credential>`"
OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")
FIRST_MESSAGE_WAIT_S = 1.0
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller")


def current_caller() -> Caller:
    """The authenticated caller of the gRPC method being served."""
    return _CALLER.get()


def bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, credential = value.strip().partition(" ")
            return credential.strip() if scheme.lower() == "bearer" else None
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN):
            return handler
        kinds = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        kind = next(k for k in kinds if getattr(handler, k) is not None)
        make = getattr(grpc, f"{kind}_rpc_method_handler")
        return make(
            self._wrap(getattr(handler, kind), streaming_requests=kind.startswith("stream")),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _authenticate(
        self, context: grpc.aio.ServicerContext, requests: Any = None
    ) -> contextvars.Token | None:
        try:
            caller = await self.auth.authenticate(bearer(context.invocation_metadata()), how=HOW)
        except RequestError as exc:
            if requests is not None:
                # Take the client's first message (its config) before refusing: a client
                # whose write is still in flight when the call ends sees INTERNAL instead of
                # this status (grpc-python), and streaming clients write at once.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(anext(aiter(requests)), FIRST_MESSAGE_WAIT_S)
            await abort(context, exc)
            return None
        return _CALLER.set(caller)

    def _wrap(self, behavior: Callable[..., Any], streaming_requests: bool) -> Callable[..., Any]:
        def pending(request: Any) -> Any:
            return request if streaming_requests else None

        if inspect.isasyncgenfunction(behavior):

            async def streaming(request, context):
                await self._authenticate(context, pending(request))
                async for response in behavior(request, context):
                    yield response

            return streaming

        async def call(request, context):
            await self._authenticate(context, pending(request))
            return await behavior(request, context)

        return call
