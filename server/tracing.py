"""OpenTelemetry tracing set-up: off unless the standard OTEL_* environment asks for it.

Why a module of its own: the composition root (server/app.py) needs one object that says
whether tracing is on, holds the tracer the session core and the gRPC interceptor share, and
flushes the exporter at shutdown. Everything else only sees a `Tracer` (or None).

What is read is the OpenTelemetry SDK's standard configuration, not settings of ours:

- `OTEL_TRACES_EXPORTER`: comma-separated exporter names, as the SDK's auto-configuration
  understands them (`otlp`, `console`, or any installed `opentelemetry_traces_exporter` entry
  point). Unset or `none` = tracing off: no provider, no interceptor, no spans at all. (The
  OpenTelemetry spec defaults it to `otlp`; a voice server should not start sending data to a
  collector nobody configured, so here unset means off.)
- `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` pick `otlp`'s
  transport; the default is `http/protobuf` (the exporter this project installs).
- `OTEL_SDK_DISABLED=true` turns it off whatever the exporter says.
- Everything else (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._HEADERS`, `OTEL_SERVICE_NAME`,
  `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`) is read by the SDK and the
  exporters themselves. The service name defaults to `voiceagent`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from importlib.metadata import entry_points

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer

log = logging.getLogger(__name__)
INSTRUMENTATION = "voiceagent"
DEFAULT_SERVICE_NAME = "voiceagent"
OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The entry-point names of the exporters OTEL_TRACES_EXPORTER asks for; [] = off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = []
    for raw in environ.get("OTEL_TRACES_EXPORTER", "").split(","):
        name = raw.strip().lower()
        if not name or name == "none":
            continue
        if name == "otlp":
            protocol = (
                environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf"
            ).strip()
            if protocol not in OTLP_BY_PROTOCOL:
                raise RuntimeError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported "
                    f"(use one of: {', '.join(OTLP_BY_PROTOCOL)})"
                )
            name = OTLP_BY_PROTOCOL[protocol]
        names.append(name)
    return names


def load_exporter(name: str) -> SpanExporter:
    """An exporter by its `opentelemetry_traces_exporter` entry point, configured from the
    environment by its own constructor."""
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        hint = " (pip install opentelemetry-exporter-otlp-proto-grpc)" if "grpc" in name else ""
        raise RuntimeError(f"OTEL_TRACES_EXPORTER: no trace exporter named {name!r}{hint}")
    try:
        return next(iter(found)).load()()
    except Exception as exc:  # e.g. a malformed OTEL_EXPORTER_OTLP_* value
        raise RuntimeError(f"OTEL_TRACES_EXPORTER: cannot set up {name!r}: {exc}") from None


def provider_from_environment(
    environ: Mapping[str, str] = os.environ,
) -> TracerProvider | None:
    """A TracerProvider exporting where the OTEL_* environment says, or None (tracing off).
    A bad value raises RuntimeError naming the variable, so start-up stops with one line."""
    names = exporter_names(environ)
    if not names:
        return None
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # reads OTEL_TRACES_SAMPLER itself
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(load_exporter(name)))
    log.info("tracing on: exporting spans with %s", ", ".join(names))
    return provider


class Tracing:
    """Whether tracing is on, and its tracer. `provider` is shut down (flushed) by `shutdown`
    only if this object built it; a provider handed in (tests) belongs to its caller."""

    def __init__(self, provider: TracerProvider | None, *, owned: bool) -> None:
        self.provider = provider
        self._owned = owned
        self.tracer: Tracer | None = (
            provider.get_tracer(INSTRUMENTATION) if provider is not None else None
        )

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @classmethod
    def configure(cls, provider: TracerProvider | None = None) -> Tracing:
        """`provider` when given (in-process, e.g. an in-memory exporter), else the
        environment's (or none: off)."""
        if provider is not None:
            return cls(provider, owned=False)
        return cls(provider_from_environment(), owned=True)

    async def aclose(self) -> None:
        """Export what is still buffered and stop; in a thread, since an unreachable
        collector blocks for the exporter's timeout (OTEL_EXPORTER_OTLP_TIMEOUT)."""
        provider, self.provider, self.tracer = self.provider, None, None
        if provider is not None and self._owned:
            await asyncio.to_thread(provider.shutdown)
