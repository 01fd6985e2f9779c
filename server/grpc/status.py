"""The gRPC edge's one error table: neutral Kind -> grpc.StatusCode (google/rpc/code.proto)."""

from __future__ import annotations

import grpc

from server.sessions.errors import Kind, RequestError, provider_kind

STATUS = {
    Kind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Kind.TOO_LARGE: grpc.StatusCode.OUT_OF_RANGE,
    Kind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Kind.CONFLICT: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Kind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Kind.NOT_CONFIGURED: grpc.StatusCode.FAILED_PRECONDITION,
    Kind.PROVIDER_FAILED: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: RequestError) -> grpc.StatusCode:
    return STATUS[exc.kind]


def provider_status(code: str) -> grpc.StatusCode:
    return STATUS[provider_kind(code)]


async def abort(context: grpc.aio.ServicerContext, exc: RequestError) -> None:
    await context.abort(STATUS[exc.kind], str(exc))
