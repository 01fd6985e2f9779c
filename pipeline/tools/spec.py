"""What a tool is: its declaration, checked once when a session (or a tool-set file) names it.

A tool is declared the way OpenAI's function tools are (name, description, JSON-schema
parameters) plus what the voice pipeline needs to know to run it safely: where it runs (on the
client over the live stream, as a signed webhook, or built in), what a barge-in may do to it
(`cancel`: read-only, stop it; `finish`: it has side effects, let it finish and keep its
result), and how long it may take. Errors name the tool and the field, so a config is fixable.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TOOLS = 64
MAX_DESCRIPTION = 2048
MAX_TIMEOUT_S = 300.0


class Runs(enum.StrEnum):
    CLIENT = "client"  # the client answers a tool_call event with a tool_result request
    WEBHOOK = "webhook"  # the server POSTs the call to `url` and uses the JSON reply
    BUILTIN = "builtin"  # the server does it itself (end_call)


class BargeIn(enum.StrEnum):
    CANCEL = "cancel"  # read-only: a barge-in cancels it; its result is not wanted
    FINISH = "finish"  # side effects: it runs to the end once started; its result is kept


class ToolSpecError(ValueError):
    """A tool declaration that cannot be used; the message names the tool and the field."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    _: KW_ONLY
    runs: Runs = Runs.CLIENT
    barge_in: BargeIn = BargeIn.FINISH
    timeout_s: float = 10.0
    idempotent: bool = False  # a webhook may be retried after a failure only if True
    url: str = ""  # webhook tools only

    def openai_tool(self) -> dict[str, Any]:
        """The Chat Completions `tools` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


END_CALL = ToolSpec(
    "end_call",
    "Hang up the call. Say goodbye in the same reply first; the call ends once the goodbye "
    "has been heard. Use it only when the caller wants to end the conversation.",
    {"type": "object", "properties": {}, "additionalProperties": False},
    runs=Runs.BUILTIN,
    barge_in=BargeIn.CANCEL,
    timeout_s=MAX_TIMEOUT_S,
)
BUILTINS = {END_CALL.name: END_CALL}


def _where(index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    return f"tools[{index}] ({name!r})" if isinstance(name, str) else f"tools[{index}]"


def parse_tool(raw: Any, index: int = 0) -> ToolSpec:
    """One declaration (a JSON object) -> a ToolSpec, or ToolSpecError naming what is wrong."""
    if not isinstance(raw, Mapping):
        raise ToolSpecError(f"tools[{index}]: must be an object")
    where = _where(index, raw)

    def fail(field_name: str, problem: str) -> ToolSpecError:
        return ToolSpecError(f"{where}: {field_name}: {problem}")

    known = {"name", "description", "parameters", "runs", "barge_in", "timeout_s"}
    known |= {"idempotent", "url"}
    for key in raw:
        if key not in known:
            raise fail(str(key)[:40], f"unknown field; expected one of {', '.join(sorted(known))}")
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise fail("name", "required, 1-64 characters of letters, digits, '_' or '-'")
    try:
        runs = Runs(raw.get("runs", Runs.CLIENT.value))
    except ValueError:
        raise fail("runs", f"must be one of {', '.join(r.value for r in Runs)}") from None
    if runs is Runs.BUILTIN:
        if name not in BUILTINS:
            raise fail("name", f"no built-in tool of this name; built-ins: {', '.join(BUILTINS)}")
        extra = set(raw) - {"name", "runs", "description"}
        if extra:
            raise fail(sorted(extra)[0], "a built-in tool takes only name, runs and description")
        builtin = BUILTINS[name]
        description = raw.get("description", builtin.description)
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise fail("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
        return ToolSpec(
            name,
            description,
            builtin.parameters,
            runs=Runs.BUILTIN,
            barge_in=builtin.barge_in,
            timeout_s=builtin.timeout_s,
        )
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise fail("description", f"must be a string of at most {MAX_DESCRIPTION} characters")
    parameters = raw.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping) or parameters.get("type") != "object":
        raise fail("parameters", 'must be a JSON schema object with "type": "object"')
    try:
        Draft202012Validator.check_schema(parameters)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.path)
        raise fail(
            "parameters", f"not a valid JSON schema ({exc.message[:200]} at /{path})"
        ) from None
    try:
        barge_in = BargeIn(raw.get("barge_in", BargeIn.FINISH.value))
    except ValueError:
        raise fail("barge_in", f"must be one of {', '.join(b.value for b in BargeIn)}") from None
    timeout = raw.get("timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise fail("timeout_s", "must be a number of seconds")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise fail("timeout_s", f"must be more than 0 and at most {MAX_TIMEOUT_S:g}")
    idempotent = raw.get("idempotent", False)
    if not isinstance(idempotent, bool):
        raise fail("idempotent", "must be true or false")
    url = raw.get("url", "")
    if runs is Runs.WEBHOOK:
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            raise fail("url", "a webhook tool needs an http:// or https:// URL")
    elif url:
        raise fail("url", "only webhook tools take a url")
    return ToolSpec(
        name,
        description,
        dict(parameters),
        runs=runs,
        barge_in=barge_in,
        timeout_s=float(timeout),
        idempotent=idempotent,
        url=url,
    )


def parse_tools(raw: Any) -> tuple[ToolSpec, ...]:
    """A list of declarations; names must be unique."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ToolSpecError("tools: must be a list of tool objects")
    if len(raw) > MAX_TOOLS:
        raise ToolSpecError(f"tools: at most {MAX_TOOLS} tools per session")
    specs = tuple(parse_tool(item, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise ToolSpecError(f"tools[{i}] ({spec.name!r}): name: declared twice")
        seen.add(spec.name)
    return specs


def merge(*groups: Sequence[ToolSpec]) -> tuple[ToolSpec, ...]:
    """Tool sets then a session's own tools: a later declaration of a name replaces an earlier."""
    by_name: dict[str, ToolSpec] = {}
    for group in groups:
        for spec in group:
            by_name[spec.name] = spec
    return tuple(by_name.values())


@dataclass(frozen=True)
class ToolOptions:
    """A session's tools and how the reply loop uses them."""

    specs: tuple[ToolSpec, ...] = ()
    _: KW_ONLY
    choice: str = "auto"  # the first model step's: "auto" | "none" | "required" | a tool name
    max_steps: int = 4  # model requests per reply; the last one may not call tools
    filler_after_s: float = 0.0  # say `filler_text` when tools take longer (0: never)
    filler_text: str = "One moment."


def check_choice(choice: str, specs: Sequence[ToolSpec]) -> str:
    """'' and 'auto' -> 'auto'; a tool name must be one of the session's tools."""
    choice = choice or "auto"
    if choice in ("auto", "none", "required"):
        return choice
    if choice not in {s.name for s in specs}:
        raise ToolSpecError(
            f"tool_choice: {choice[:64]!r} is not auto, none, required or a tool of this session"
        )
    return choice
