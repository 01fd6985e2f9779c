"""Protos in, the core's plain values out: the gRPC edge's decoding, done once per message.

Only what is proto-specific is checked here (the encoding enum, which oneof is set); the
values themselves are checked by the core's `checks`, the same for every edge.
"""

from __future__ import annotations

import json

from voiceagent.v1 import audio_pb2, converse_pb2, tools_pb2

from pipeline.audio import PcmFormat
from server.auth.caller import Caller
from server.config import Settings
from server.sessions import checks, ids
from server.sessions.errors import RequestError
from server.sessions.opener import SessionRequest
from server.sessions.tools import parse_declared

LINEAR16 = audio_pb2.AUDIO_ENCODING_LINEAR16


def input_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.encoding != LINEAR16:
        raise RequestError(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16 (16-bit PCM)")
    return checks.input_format(fmt.sample_rate_hz, fmt.channels, field)


def output_format(fmt: audio_pb2.AudioFormat, field: str) -> PcmFormat:
    if fmt.ByteSize() == 0:
        return checks.DEFAULT_OUTPUT
    if fmt.encoding not in (audio_pb2.AUDIO_ENCODING_UNSPECIFIED, LINEAR16):
        raise RequestError(f"{field}.encoding must be AUDIO_ENCODING_LINEAR16")
    return checks.output_format(fmt.sample_rate_hz, fmt.channels, field)


def vad_params(vad: audio_pb2.VadConfig, settings: Settings):
    return checks.vad_params(
        settings,
        threshold=vad.threshold,
        start_ms=vad.start_ms,
        stop_ms=vad.stop_ms,
        pre_roll_ms=vad.pre_roll_ms,
    )


def session_request(
    config: converse_pb2.SessionConfig, settings: Settings, caller: Caller
) -> SessionRequest:
    """A Converse stream's first message -> what the opener takes."""
    has_input = config.HasField("input_format")
    return SessionRequest(
        edge="grpc",
        caller=caller,
        session_id=ids.strict(config.session_id) if config.session_id else "",
        customer_id=config.customer_id,
        instructions=config.instructions,
        voice=config.voice,
        input_format=input_format(config.input_format, "config.input_format")
        if has_input
        else None,
        output_format=output_format(config.output_format, "config.output_format"),
        vad=vad_params(config.vad, settings),
        record=config.record,
        tools=tools(config.tools),
        tool_sets=tuple(config.tool_sets),
        tool_choice=config.tool_choice,
    )


RUNNERS = {
    tools_pb2.TOOL_RUNNER_UNSPECIFIED: "client",
    tools_pb2.TOOL_RUNNER_CLIENT: "client",
    tools_pb2.TOOL_RUNNER_WEBHOOK: "webhook",
    tools_pb2.TOOL_RUNNER_BUILTIN: "builtin",
}
BARGE_IN = {
    tools_pb2.TOOL_BARGE_IN_UNSPECIFIED: "finish",
    tools_pb2.TOOL_BARGE_IN_FINISH: "finish",
    tools_pb2.TOOL_BARGE_IN_CANCEL: "cancel",
}


def tools(definitions) -> tuple:
    """ToolDefinitions -> the same JSON objects every edge declares tools with, then specs."""
    declared = []
    for i, d in enumerate(definitions):
        if d.runner not in RUNNERS or d.barge_in not in BARGE_IN:
            raise RequestError(f"config.tools[{i}] ({d.name!r}): unknown runner or barge_in")
        raw: dict = {"name": d.name, "runs": RUNNERS[d.runner]}
        if d.runner != tools_pb2.TOOL_RUNNER_BUILTIN:
            raw |= {"description": d.description, "barge_in": BARGE_IN[d.barge_in]}
            raw["idempotent"] = d.idempotent
            if d.timeout_ms:
                raw["timeout_s"] = d.timeout_ms / 1000
            if d.webhook_url:
                raw["url"] = d.webhook_url
            if d.parameters_json:
                try:
                    raw["parameters"] = json.loads(d.parameters_json)
                except ValueError as exc:
                    raise RequestError(
                        f"config.tools[{i}] ({d.name!r}): parameters_json: not JSON ({exc})"
                    ) from None
        elif d.description:
            raw["description"] = d.description
        declared.append(raw)
    return parse_declared(declared)


def tool_result(result: tools_pb2.ToolResult) -> tuple[str, str, str]:
    """A ToolResult -> (call_id, output, error); exactly one of output / error is set."""
    which = result.WhichOneof("result")
    if which is None:
        raise RequestError("tool_result needs output or error")
    if which == "error" and not result.error.strip():
        raise RequestError("tool_result.error must not be empty")
    checks.bounded_text(result.output, "tool_result.output", checks.MAX_TOOL_RESULT_CHARS)
    checks.bounded_text(result.error, "tool_result.error", checks.MAX_TEXT_CHARS)
    return result.call_id, result.output, result.error
