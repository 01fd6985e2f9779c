"""Realtime `turn_detection` onto the pipeline's VAD stage: server VAD parameters, whether a
committed turn gets a reply on its own (`create_response`), whether speech cuts the agent
(`interrupt_response`), and the idle timeout.

The VAD stage keeps running in every mode; with `turn_detection: null` the edge just stops
feeding it and buffers audio for `input_audio_buffer.commit` instead.
"""

from __future__ import annotations

import asyncio

from pipeline.vad import VadParams, VadState
from server.realtime.config import ServerVad
from server.realtime.connection import Connection


async def _no_barge_in() -> None:
    return None


def vad_params(vad: ServerVad, current: VadParams) -> VadParams:
    """Realtime's server VAD over the session's current settings (start debounce and quiet
    gate stay the server's: Realtime has no fields for them)."""
    return VadParams(**{**current.model_dump(), "threshold": vad.threshold,
        "stop_ms": vad.silence_duration_ms, "pre_roll_ms": vad.prefix_padding_ms})  # fmt: skip


def from_params(params: VadParams) -> ServerVad:
    """The session's opening VAD (the server's settings) as Realtime reports it."""
    return ServerVad(params.threshold, params.pre_roll_ms, params.stop_ms)


def apply_turn_detection(conn: Connection, vad: ServerVad | None, *, reset: bool = False) -> None:
    session = conn.session
    # The pipeline's STT opens a turn (and replies) only when the client wants that; otherwise
    # it transcribes each segment and the edge holds it for response.create.
    session.stt.open_turn = conn.open_turn if vad is not None and vad.create_response else None
    stage = session.vad
    if stage is None:
        return
    stage.on_speech_start = conn.barge_in if vad is None or vad.interrupt_response else _no_barge_in
    if vad is None:
        return
    params = vad_params(vad, stage.segmenter.params)
    if reset or params != stage.segmenter.params:
        if reset or stage.segmenter.machine.state == VadState.QUIET:
            stage.set_params(params)


class IdleTimer:
    """`idle_timeout_ms`: no speech that long after a response ends -> the edge commits an
    empty turn and asks for a response (input_audio_buffer.timeout_triggered)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._task: asyncio.Task[None] | None = None
        conn.on_response_done = self.arm
        conn.on_speech = self.cancel

    def arm(self) -> None:
        self.cancel()
        vad = self.conn.config.turn_detection
        if vad is not None and vad.idle_timeout_ms:
            self._task = asyncio.get_running_loop().create_task(self._wait(vad.idle_timeout_ms))

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _wait(self, ms: int) -> None:
        start = round(self.conn.input_ms)
        await asyncio.sleep(ms / 1000)
        conn = self.conn
        if conn.active is not None or conn.gone:
            return
        item_id = conn.new_item_id()
        await conn.send({"type": "input_audio_buffer.timeout_triggered", "item_id": item_id,
                         "audio_start_ms": start, "audio_end_ms": round(conn.input_ms)})  # fmt: skip
        await conn.start_response({})
