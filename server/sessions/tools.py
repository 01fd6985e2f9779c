"""The server's side of tools: tool sets from TOOLS_FILE, what a session may declare, webhooks.

A session's tools are the tool sets it names (or the `default` set) plus its own declarations.
A caller must not be able to make the server POST to an address of its choosing, so a
session's own webhook tools may only call URLs under TOOL_WEBHOOK_ALLOWED_URLS, and every
webhook call is signed with TOOL_WEBHOOK_SECRET (webhook tools are refused without one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import httpx

from pipeline.tools.lifecycle import ResultRejected, parse_result
from pipeline.tools.spec import (
    Runs,
    ToolOptions,
    ToolSpec,
    ToolSpecError,
    check_choice,
    merge,
    parse_tools,
)
from pipeline.tools.webhook import WebhookCaller
from server.config import Settings
from server.sessions import checks
from server.sessions.errors import Kind, RequestError

DEFAULT_SET = "default"


class ToolSetsError(ValueError):
    """TOOLS_FILE cannot be used; the server does not start."""


def load_tool_sets(path: Path | None) -> dict[str, tuple[ToolSpec, ...]]:
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ToolSetsError(f"TOOLS_FILE {path}: cannot read it as JSON ({exc})") from None
    sets = raw.get("tool_sets") if isinstance(raw, dict) else None
    if not isinstance(sets, dict):
        raise ToolSetsError(f'TOOLS_FILE {path}: expected {{"tool_sets": {{name: [tool, ...]}}}}')
    out = {}
    for name, tools in sets.items():
        try:
            out[name] = parse_tools(tools)
        except ToolSpecError as exc:
            raise ToolSetsError(f"TOOLS_FILE {path}: tool_sets.{name}: {exc}") from None
    return out


class ToolCatalog:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sets = load_tool_sets(settings.tools_file)
        secret = settings.tool_webhook_secret
        self._http: httpx.AsyncClient | None = None
        self.webhook: WebhookCaller | None = None
        if secret is not None:
            # No redirects (a 3xx is a failure), no proxies from the environment.
            self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self.webhook = WebhookCaller(self._http, secret.get_secret_value().encode())
        if self.webhook is None:
            for name, specs in self.sets.items():
                if any(s.runs is Runs.WEBHOOK for s in specs):
                    raise ToolSetsError(
                        f"TOOLS_FILE tool set {name!r} has webhook tools: set TOOL_WEBHOOK_SECRET"
                    )

    def options(
        self, tools: Sequence[ToolSpec], tool_sets: Sequence[str], choice: str
    ) -> ToolOptions:
        """A session's tools, or RequestError(INVALID_ARGUMENT) naming what is wrong."""
        names = list(tool_sets) or ([DEFAULT_SET] if DEFAULT_SET in self.sets else [])
        unknown = [n for n in names if n not in self.sets]
        if unknown:
            have = ", ".join(sorted(self.sets)) or "none"
            raise RequestError(
                f"tool_sets: no tool set named {unknown[0][:64]!r} (this server has: {have})",
                Kind.INVALID,
            )
        for i, spec in enumerate(tools):
            if spec.runs is Runs.WEBHOOK:
                self._check_webhook(i, spec)
        specs = merge(*(self.sets[n] for n in names), tools)
        try:
            choice = check_choice(choice, specs)
        except ToolSpecError as exc:
            raise RequestError(str(exc), Kind.INVALID) from None
        s = self.settings
        return ToolOptions(
            specs,
            choice=choice,
            max_steps=s.tool_max_steps,
            filler_after_s=s.tool_filler_after_s,
            filler_text=s.tool_filler_text,
        )

    def _check_webhook(self, index: int, spec: ToolSpec) -> None:
        where = f"tools[{index}] ({spec.name!r}): url"
        if self.webhook is None:
            raise RequestError(
                f"{where}: webhook tools are not enabled on this server (TOOL_WEBHOOK_SECRET)",
                Kind.INVALID,
            )
        allowed = self.settings.tool_webhook_allowed_urls
        if not any(spec.url.startswith(prefix) for prefix in allowed):
            raise RequestError(
                f"{where}: not under an allowed prefix (TOOL_WEBHOOK_ALLOWED_URLS)",
                Kind.INVALID,
            )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def parse_declared(raw: object) -> tuple[ToolSpec, ...]:
    """Tools as JSON objects (WebSocket, WebRTC, REST) -> specs, or INVALID_ARGUMENT."""
    try:
        return parse_tools(raw)
    except ToolSpecError as exc:
        raise RequestError(str(exc), Kind.INVALID) from None


def tool_result_fields(body: dict) -> tuple[str, str, str]:
    """A JSON `tool_result` message (WebSocket, WebRTC data channel) -> (call_id, output,
    error): `output` a string or any JSON value, or `error` a string; exactly one."""
    call_id = body.get("call_id")
    if not isinstance(call_id, str) or not call_id:
        raise RequestError('tool_result needs "call_id", a string', Kind.INVALID)
    try:
        output, error = parse_result(body.get("output"), body.get("error"))
    except ResultRejected as exc:
        raise RequestError(f"tool_result: {exc}", Kind.INVALID) from None
    checks.bounded_text(output, "tool_result.output", checks.MAX_TOOL_RESULT_CHARS)
    checks.bounded_text(error, "tool_result.error", checks.MAX_TEXT_CHARS)
    checks.bounded_text(call_id, "tool_result.call_id", checks.MAX_NAME_CHARS)
    return call_id, output, error


def tools_fields(body: dict) -> tuple[tuple[ToolSpec, ...], tuple[str, ...], str]:
    """A JSON `tools` message or offer: (declared tools, tool set names, tool_choice)."""
    tools = parse_declared(body.get("tools", []))
    sets = body.get("tool_sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
        raise RequestError("tool_sets must be a list of tool set names", Kind.INVALID)
    choice = body.get("tool_choice", "")
    if not isinstance(choice, str):
        raise RequestError('tool_choice must be "auto", "none", "required" or a tool name')
    return tools, tuple(sets), choice
