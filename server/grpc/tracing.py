"""A server span per gRPC call: OpenTelemetry's grpc.aio server interceptor, fixed for
streaming handlers that write with `context.write`.

Why not the upstream interceptor as it is: for every response-streaming method it iterates
the handler with `async for`, but grpc.aio also allows coroutine handlers that send with
`context.write`, and Converse and Transcribe are such handlers (see voice_agent.write_all:
it is how a vanished client's session gets cleaned up at once). Upstream fails them with
"'async for' requires an object with __aiter__ method, got coroutine"
(open-telemetry/opentelemetry-python-contrib#3066). A coroutine handler is traced the way
upstream traces unary handlers (await it inside the span); async-generator handlers keep
upstream's streaming path. Span names, attributes, status codes and the incoming
`traceparent` handling are upstream's.

Health checks are not traced (load balancers poll them).
"""

from __future__ import annotations

import inspect

from opentelemetry.instrumentation.grpc import filters
from opentelemetry.instrumentation.grpc._aio_server import OpenTelemetryAioServerInterceptor
from opentelemetry.instrumentation.grpc.version import __version__
from opentelemetry.trace import TracerProvider

SCHEMA_URL = "https://opentelemetry.io/schemas/1.11.0"  # what upstream's factory uses


class TracingInterceptor(OpenTelemetryAioServerInterceptor):
    def _intercept_aio_server_stream(self, behavior, handler_call_details):
        if inspect.isasyncgenfunction(behavior):
            return super()._intercept_aio_server_stream(behavior, handler_call_details)
        # A coroutine that writes its responses with context.write: await it in the span.
        return self._intercept_aio_server_unary(behavior, handler_call_details)


def grpc_tracing(tracer_provider: TracerProvider | None) -> list[TracingInterceptor]:
    """The interceptors to put first in `grpc.aio.server(interceptors=[...])` (so refused
    calls are traced too): none with tracing off."""
    if tracer_provider is None:
        return []
    tracer = tracer_provider.get_tracer(
        "opentelemetry.instrumentation.grpc", __version__, schema_url=SCHEMA_URL
    )
    return [TracingInterceptor(tracer, filter_=filters.negate(filters.health_check()))]
