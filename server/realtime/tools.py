"""Function calls: Realtime `function_call` items onto the pipeline's tool lifecycle.

The pipeline's chat stage does not call tools yet (the tool-call lifecycle is being added), so
for now tools are kept in the session config, reported back in `session.updated`, and a
function_call / function_call_output item is refused with an `error` naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.realtime.errors import unsupported_field

if TYPE_CHECKING:
    from server.realtime.config import SessionConfig
    from server.realtime.connection import Connection


def configure(conn: Connection, config: SessionConfig) -> None:
    """The session's tools changed (nothing to do until the chat stage calls tools)."""


async def item_create(conn: Connection, item_id: str, body: dict, previous: str | None) -> None:
    raise unsupported_field("item.type", "function calls are not available on this server yet")


def response_overrides(conn: Connection, key: str, value: object, overrides: dict) -> None:
    raise unsupported_field(f"response.{key}", "per-response tools are not supported")
