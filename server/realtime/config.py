"""A Realtime session's configuration: what `session.update` may change, checked and applied
atomically, and rendered back as the `session` of `session.created` / `session.updated`.

Fields the GA protocol has but this server does not implement are named in an `error` (the
rest of the update still applies); fields the protocol does not have are named as unknown.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from server.realtime.errors import Problem, unknown_field, unsupported_field
from server.realtime.formats import PCM, AudioFormat, parse_format

SESSION_FIELDS = {"type", "model", "instructions", "output_modalities", "audio", "tools",
                  "tool_choice", "include", "max_output_tokens", "prompt", "tracing",
                  "truncation", "parallel_tool_calls", "reasoning", "id", "object",
                  "expires_at", "client_secret"}  # fmt: skip
UNSUPPORTED = {"include", "prompt", "reasoning", "parallel_tool_calls", "client_secret"}
# Accepted when they ask for what this server does anyway.
HARMLESS = {"max_output_tokens": ("inf", None), "tracing": (None,), "truncation": ("auto", None)}
READ_ONLY = {"id", "object", "expires_at"}
TURN_DETECTION_FIELDS = {"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                         "create_response", "interrupt_response", "idle_timeout_ms"}  # fmt: skip


@dataclass(frozen=True)
class ServerVad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None

    def wire(self) -> dict:
        return {"type": "server_vad", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict = field(default_factory=dict)

    def wire(self) -> dict:
        return {"type": "function", "name": self.name, "description": self.description,
                "parameters": self.parameters}  # fmt: skip


@dataclass(frozen=True)
class SessionConfig:
    instructions: str
    voice: str = "alloy"
    model: str = "gpt-realtime"
    input_format: AudioFormat = PCM
    output_format: AudioFormat = PCM
    turn_detection: ServerVad | None = ServerVad()
    transcription: dict | None = None  # {"model": ...}; None: no transcription events
    output_modalities: tuple[str, ...] = ("audio",)
    tools: tuple[Tool, ...] = ()
    tool_choice: str | dict = "auto"

    @property
    def speaks(self) -> bool:
        return "audio" in self.output_modalities

    def wire(self, session_id: str) -> dict:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": self.model,
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "audio": {
                "input": {
                    "format": self.input_format.wire(),
                    "transcription": self.transcription,
                    "turn_detection": self.turn_detection and self.turn_detection.wire(),
                    "noise_reduction": None,
                },
                "output": {"format": self.output_format.wire(), "voice": self.voice, "speed": 1.0},
            },
            "tools": [t.wire() for t in self.tools],
            "tool_choice": self.tool_choice,
            "max_output_tokens": "inf",
            "tracing": None,
            "truncation": "auto",
        }


def update(config: SessionConfig, session: object) -> tuple[SessionConfig, list[Problem]]:
    """`session.update`'s `session` applied to `config`: the new config and the fields it
    ignored (each a Problem). Raises Problem if a value is wrong (then nothing applies)."""
    if not isinstance(session, dict):
        raise Problem("session must be an object", param="session")
    ignored: list[Problem] = []
    changes: dict = {}
    for key, value in session.items():
        param = f"session.{key}"
        if key not in SESSION_FIELDS:
            ignored.append(unknown_field(param))
        elif key in READ_ONLY:
            continue
        elif key in UNSUPPORTED and value is not None:
            ignored.append(unsupported_field(param))
        elif key in HARMLESS:
            if value not in HARMLESS[key]:
                ignored.append(unsupported_field(param, f"only {HARMLESS[key][0]!r}"))
        elif key == "type":
            if value != "realtime":
                raise Problem(
                    "session.type must be 'realtime' (transcription sessions are not supported)",
                    "unsupported_parameter",
                    param,
                )
        elif key == "model":
            changes["model"] = _string(value, param, 200)
        elif key == "instructions":
            changes["instructions"] = _string(value, param, 20_000)
        elif key == "output_modalities":
            changes["output_modalities"] = modalities(value, param)
        elif key == "audio":
            _audio(value, changes, ignored)
        elif key == "tools":
            changes["tools"] = tools(value, param)
        elif key == "tool_choice":
            changes["tool_choice"] = tool_choice(value, param)
    return dataclasses.replace(config, **changes), ignored


def _audio(value: object, changes: dict, ignored: list[Problem]) -> None:
    if not isinstance(value, dict):
        raise Problem("session.audio must be an object", param="session.audio")
    for key, part in value.items():
        param = f"session.audio.{key}"
        if key not in ("input", "output"):
            ignored.append(unknown_field(param))
            continue
        if not isinstance(part, dict):
            raise Problem(f"{param} must be an object", param=param)
        for name, item in part.items():
            p = f"{param}.{name}"
            if name == "format":
                try:
                    fmt = parse_format(item, p)
                except ValueError as exc:
                    raise Problem(str(exc), param=p) from None
                changes[f"{key}_format"] = fmt
            elif key == "input" and name == "turn_detection":
                changes["turn_detection"] = turn_detection(item, p)
            elif key == "input" and name == "transcription":
                changes["transcription"] = transcription(item, p, ignored)
            elif key == "input" and name == "noise_reduction":
                if item is not None:
                    ignored.append(unsupported_field(p))
            elif key == "output" and name == "voice":
                voice = item.get("id") if isinstance(item, dict) else item
                changes["voice"] = _string(voice, p, 200)
            elif key == "output" and name == "speed":
                if item != 1.0:
                    ignored.append(unsupported_field(p, "speech is at speed 1.0"))
            else:
                ignored.append(unknown_field(p))


def turn_detection(value: object, param: str) -> ServerVad | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Problem(f"{param} must be an object or null", param=param)
    kind = value.get("type", "server_vad")
    if kind == "semantic_vad":
        raise Problem(f"{param}.type 'semantic_vad' is not supported; use 'server_vad' or null",
                      "unsupported_parameter", f"{param}.type")  # fmt: skip
    if kind != "server_vad":
        raise Problem(f"{param}.type must be 'server_vad'", param=f"{param}.type")
    for key in value:
        if key not in TURN_DETECTION_FIELDS:
            raise unknown_field(f"{param}.{key}")
    vad = ServerVad()
    threshold = value.get("threshold", vad.threshold)
    if not isinstance(threshold, int | float) or math.isnan(threshold) or not 0 < threshold < 1:
        raise Problem(f"{param}.threshold must be a number in (0, 1)", param=f"{param}.threshold")
    ints = {}
    for key, low, high in (("prefix_padding_ms", 0, 2_000), ("silence_duration_ms", 64, 10_000)):
        v = value.get(key, getattr(vad, key))
        if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
            raise Problem(f"{param}.{key} must be an integer from {low} to {high}",
                          param=f"{param}.{key}")  # fmt: skip
        ints[key] = v
    idle = value.get("idle_timeout_ms")
    if idle is not None and (not isinstance(idle, int) or not 5_000 <= idle <= 30_000):
        raise Problem(f"{param}.idle_timeout_ms must be an integer from 5000 to 30000 or null",
                      param=f"{param}.idle_timeout_ms")  # fmt: skip
    flags = {}
    for key in ("create_response", "interrupt_response"):
        v = value.get(key, True)
        if not isinstance(v, bool):
            raise Problem(f"{param}.{key} must be a boolean", param=f"{param}.{key}")
        flags[key] = v
    return ServerVad(
        threshold=float(threshold),
        prefix_padding_ms=ints["prefix_padding_ms"],
        silence_duration_ms=ints["silence_duration_ms"],
        create_response=flags["create_response"],
        interrupt_response=flags["interrupt_response"],
        idle_timeout_ms=idle,
    )


def transcription(value: object, param: str, ignored: list[Problem]) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Problem(f"{param} must be an object or null", param=param)
    for key, v in value.items():
        if key != "model" and v is not None:
            ignored.append(
                unsupported_field(f"{param}.{key}", "this server's speech-to-text decides")
            )
    return {"model": _string(value.get("model") or "whisper-1", f"{param}.model", 200)}


def modalities(value: object, param: str) -> tuple[str, ...]:
    if value not in (["audio"], ["text"]):
        raise Problem(f'{param} must be ["audio"] or ["text"]', param=param)
    return tuple(value)


def tools(value: object, param: str) -> tuple[Tool, ...]:
    if not isinstance(value, list):
        raise Problem(f"{param} must be an array", param=param)
    out = []
    for i, tool in enumerate(value):
        p = f"{param}[{i}]"
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise Problem(f"{p}: only function tools are supported (no MCP)",
                          "unsupported_parameter", p)  # fmt: skip
        for key in tool:
            if key not in ("type", "name", "description", "parameters"):
                raise unknown_field(f"{p}.{key}")
        name = _string(tool.get("name"), f"{p}.name", 64)
        if not name:
            raise Problem(f"{p}.name is required", param=f"{p}.name")
        params = tool.get("parameters") or {}
        if not isinstance(params, dict):
            raise Problem(f"{p}.parameters must be a JSON schema object", param=f"{p}.parameters")
        out.append(
            Tool(name, _string(tool.get("description") or "", f"{p}.description", 4_000), params)
        )
    return tuple(out)


def tool_choice(value: object, param: str) -> str | dict:
    if value in ("auto", "none", "required"):
        return value
    if (
        isinstance(value, dict)
        and value.get("type") == "function"
        and isinstance(value.get("name"), str)
    ):
        return {"type": "function", "name": value["name"]}
    raise Problem(f"{param} must be 'auto', 'none', 'required' or a function", param=param)


def _string(value: object, param: str, limit: int) -> str:
    if not isinstance(value, str):
        raise Problem(f"{param} must be a string", param=param)
    if len(value) > limit or "\x00" in value:
        raise Problem(f"{param} must be at most {limit} characters, without NUL", param=param)
    return value
