"""Function calls: Realtime `function_call` items onto the pipeline's tool lifecycle.

Tools declared by `session.update` become client-run ToolSpecs of the live session (beside
the server's own tool sets). When the model calls one, the pipeline's reply waits for the
result; the client sees a function_call item and `response.done`, answers with a
`function_call_output` item, and `response.create` hands the output to the waiting reply, which
goes on as the new response. A barge-in lets an unanswered call finish (its late output still
joins history).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pipeline.tools.spec import (
    MAX_TIMEOUT_S,
    BargeIn,
    Runs,
    ToolSpec,
    ToolSpecError,
    merge,
    parse_tool,
)
from server.realtime.errors import Problem, unsupported_field
from server.realtime.items import Item

if TYPE_CHECKING:
    from server.realtime.config import SessionConfig
    from server.realtime.connection import Connection


def specs(config: SessionConfig) -> tuple[ToolSpec, ...]:
    out = []
    for i, tool in enumerate(config.tools):
        raw = {"name": tool.name, "description": tool.description,
               "parameters": tool.parameters or {"type": "object", "properties": {}}}  # fmt: skip
        try:
            spec = parse_tool(raw, i)
        except ToolSpecError as exc:
            raise Problem(str(exc), param=f"session.tools[{i}]") from None
        # The client answers when it likes (response.create): the reply may wait that long.
        out.append(dataclasses.replace(spec, runs=Runs.CLIENT, barge_in=BargeIn.FINISH,
                                       timeout_s=MAX_TIMEOUT_S))  # fmt: skip
    return tuple(out)


def choice(config: SessionConfig) -> str:
    value = config.tool_choice
    return value["name"] if isinstance(value, dict) else value


def configure(conn: Connection, config: SessionConfig) -> None:
    """The session's tools changed: the pipeline offers these (and the server's) from now on."""
    session = conn.session
    declared = merge(conn.server_tools, specs(config))
    session.tools.specs = {s.name: s for s in declared}
    session.chat.tools = session.tools if declared else None
    session.chat.tool_options = dataclasses.replace(
        session.chat.tool_options, specs=declared, choice=choice(config)
    )


async def item_create(conn: Connection, item_id: str, body: dict, previous: str | None) -> None:
    if body.get("type") == "function_call":
        raise unsupported_field("item.type", "function_call items come from the model only")
    call_id, output = body.get("call_id"), body.get("output")
    if not isinstance(call_id, str) or call_id not in conn.waiting:
        raise Problem(f"no function call with call_id {str(call_id)[:64]!r} awaits an output",
                      "invalid_value", "item.call_id")  # fmt: skip
    if not isinstance(output, str):
        raise Problem("item.output must be a string", param="item.output")
    item = Item(item_id, "function_call_output", call_id=call_id, output=output)
    conn.items.add(item)
    conn.outputs[call_id] = output
    await conn.send(
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item.wire()},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": item.wire()},
    )


def answered_turn(conn: Connection) -> int | None:
    """The pipeline turn that answered outputs belong to (response.create continues it)."""
    turns = {conn.waiting[c] for c in conn.outputs}
    return max(turns) if turns else None


async def submit(conn: Connection) -> None:
    """Hand the answered outputs to the waiting reply (which then goes on)."""
    outputs, conn.outputs = conn.outputs, {}
    for call_id, output in outputs.items():
        conn.waiting.pop(call_id, None)
        await conn.session.tool_result(call_id, output, "")


def response_overrides(conn: Connection, key: str, value: object, overrides: dict) -> None:
    raise unsupported_field(f"response.{key}", "tools are set per session (session.update)")
