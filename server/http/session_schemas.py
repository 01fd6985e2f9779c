"""Response bodies for stored sessions (/sessions) and live WebSockets (/ws/status)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from server.http.schemas import SESSION_ID, Latency, StoredToolCall


class SessionOut(BaseModel):
    session_id: str = Field(examples=[SESSION_ID])
    customer_id: str = Field("", examples=["customer123"])
    state: str = Field(
        description="started, listening, thinking, speaking, disconnected (idle, resumable) "
        "or ended.",
        examples=["disconnected"],
    )
    instructions: str
    voice: str = ""
    created_at: datetime
    ended_at: datetime | None = None
    end_reason: str = ""
    turn_count: int = Field(description="Completed turns.", examples=[2])
    live: bool = Field(description="A request, WebSocket or gRPC stream is on it now.")


class SessionPage(BaseModel):
    sessions: list[SessionOut] = Field(description="Newest first.")
    next_page_token: str = Field("", description="Pass as page_token for the next page.")


class StoredTurn(BaseModel):
    turn_index: int = Field(examples=[1])
    role: Literal["user", "agent"]
    text: str = Field(description="User: transcript or typed text. Agent: the whole reply.")
    spoken_text: str = Field("", description="Agent: the part sent as audio before any cut.")
    interrupted: bool = False
    start_offset_ms: int = 0
    end_offset_ms: int = 0
    audio_ms: int = 0
    latency: Latency | None = None
    created_at: datetime
    tool_calls: list[StoredToolCall] = Field(
        default_factory=list, description="Agent: this reply's tool calls, in order."
    )


class TurnPage(BaseModel):
    turns: list[StoredTurn] = Field(description="Oldest first: user, then agent, per turn.")
    next_page_token: str = ""


class WsConnectionOut(BaseModel):
    session_id: str = Field(description="The stored session's id.", examples=[SESSION_ID])
    client_session_id: str = Field(description="The id in the URL.", examples=["session123"])
    connected_at: datetime
    client: str = Field(examples=["127.0.0.1:53422"])
    messages_received: int
    messages_sent: int
    turns: int = Field(description="Completed turns on this connection.")


class WsStatusOut(BaseModel):
    active_connections: int = Field(examples=[1])
    session_ids: list[str] = Field(examples=[["session123"]])
    connections: list[WsConnectionOut]


class WsDisconnectOut(BaseModel):
    session_id: str = Field(examples=["session123"])
    disconnected: bool = True
    message: str = Field(examples=["WebSocket for session123 closed"])
