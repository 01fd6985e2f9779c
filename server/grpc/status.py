"""The gRPC edge's one error table: neutral Kind -> grpc.StatusCode (google/rpc/code.proto).

A refusal with a retry time carries `google.rpc.RetryInfo` in the rich status details, as
Google's APIs do for RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

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
    Kind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Kind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Kind.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


def status_of(exc: RequestError) -> grpc.StatusCode:
    return STATUS[exc.kind]


def provider_status(code: str) -> grpc.StatusCode:
    return STATUS[provider_kind(code)]


async def abort(context: grpc.aio.ServicerContext, exc: RequestError) -> None:
    code = STATUS[exc.kind]
    if exc.retry_after_s is None:
        await context.abort(code, str(exc))
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=max(1, round(exc.retry_after_s)))
    )
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = status_pb2.Status(code=code.value[0], message=str(exc), details=[detail])
    assert status.code == getattr(code_pb2, code.name)
    await context.abort_with_status(rpc_status.to_status(status))
