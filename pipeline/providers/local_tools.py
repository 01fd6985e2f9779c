"""Tool calls for the local chat model: grammar-constrained JSON, so every call is valid.

A small local model has no reliable native tool-call format, so when tools are offered its
reply is constrained (llama.cpp's JSON-schema grammar) to one of `{"say": "..."}` or
`{"tool": NAME, "arguments": {...}}` with that tool's own argument schema: whatever it
decides, the arguments validate. The "say" text is streamed as it is generated. History
with tool calls is rendered as plain text turns, which any chat template can take.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline.providers.base import ChatMessage, ChatTools

SAY = {"type": "object", "properties": {"say": {"type": "string"}}, "required": ["say"]}


def reply_schema(tools: ChatTools) -> dict[str, Any]:
    """The schema the model's whole reply must match for this offer."""
    specs = [
        s for s in tools.specs if tools.choice in ("auto", "required") or s.name == tools.choice
    ]
    calls = [
        {
            "type": "object",
            "properties": {"tool": {"const": s.name}, "arguments": dict(s.parameters)},
            "required": ["tool", "arguments"],
        }
        for s in specs
    ]
    options = calls if tools.choice != "auto" else [SAY, *calls]
    return options[0] if len(options) == 1 else {"anyOf": options}


def tools_prompt(tools: ChatTools) -> str:
    lines = ["You can use tools. Reply with JSON only:", '{"say": "..."} to speak to the user,']
    lines.append('or {"tool": "<name>", "arguments": {...}} to call one of these tools:')
    for spec in tools.specs:
        params = json.dumps(spec.parameters.get("properties", {}))
        lines.append(f"- {spec.name}: {spec.description} Arguments: {params}")
    return "\n".join(lines)


def plain_messages(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Tool calls and results as ordinary assistant / user turns."""
    out = []
    for m in messages:
        if m.role == "assistant" and m.tool_calls:
            calls = "; ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            text = f"{m.content} [called {calls}]".strip()
            out.append(ChatMessage("assistant", text))
        elif m.role == "tool":
            out.append(ChatMessage("user", f"[tool result] {m.content}"))
        else:
            out.append(m)
    return out


class SayStream:
    """Streams the "say" string out of a JSON reply while it is generated: feed the raw text,
    get the newly decoded characters. `kind` says what the reply is once that is known."""

    def __init__(self) -> None:
        self.raw = ""
        self.kind: str | None = None  # "say" | "tool"
        self._start = 0  # index in raw where the say string's characters begin
        self._pos = 0
        self._done = False

    def feed(self, text: str) -> str:
        self.raw += text
        if self.kind is None:
            head = self.raw.lstrip()
            if head.startswith("{"):
                body = head[1:].lstrip()
                if body.startswith('"tool"'):
                    self.kind = "tool"
                elif body.startswith('"say"'):
                    after = body[len('"say"') :].lstrip()
                    if after.startswith(":") and after[1:].lstrip().startswith('"'):
                        self.kind = "say"
                        quote = self.raw.index('"', self.raw.index(":") + 1)
                        self._start = self._pos = quote + 1
        if self.kind != "say" or self._done:
            return ""
        return self._decode()

    def _decode(self) -> str:
        out, raw, i = [], self.raw, self._pos
        while i < len(raw):
            ch = raw[i]
            if ch == '"':
                self._done = True
                i += 1
                break
            if ch == "\\":
                if i + 1 >= len(raw):
                    break  # the escape is not complete yet
                nxt = raw[i + 1]
                if nxt == "u":
                    if i + 6 > len(raw):
                        break
                    try:
                        out.append(chr(int(raw[i + 2 : i + 6], 16)))
                    except ValueError:
                        pass
                    i += 6
                    continue
                out.append({"n": "\n", "t": "\t", "r": "", "b": "", "f": ""}.get(nxt, nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        self._pos = i
        return "".join(out)

    def call(self) -> tuple[str, str] | None:
        """The finished reply's tool call: (name, arguments JSON), if it is one."""
        try:
            value = json.loads(self.raw)
        except ValueError:
            return None
        if isinstance(value, dict) and isinstance(value.get("tool"), str):
            return value["tool"], json.dumps(value.get("arguments", {}))
        return None
