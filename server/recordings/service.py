"""Recordings as the server sees them: which streams are recorded, where their files go, how
they are listed, handed over and expired.

Why here and not in the opener: the opener only asks `attach` for a recorder when it starts a
stream and closes it when the stream ends (two small hooks); the policy (RECORD_SESSIONS or
the stream's own request), the file layout (`files`), the hand-over (`hooks`), retention and
the writer thread's lifetime live in this one place, owned by the core. The live path only
ever calls the recorder's non-blocking methods; everything that touches the disk runs in the
writer thread or, for listings and retention, in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path

from pipeline.recording import CallRecorder, Finished, RecordingWriter
from pipeline.session import SessionOptions, VoiceSession
from server.config import Settings
from server.recordings import files
from server.recordings.files import RecordingFile
from server.recordings.hooks import FinishedHooks

log = logging.getLogger(__name__)
SETTLE_S = 2.0  # listings first wait this long for queued recording work (read-your-writes)
MAX_SWEEP_PERIOD_S = 3600.0


class Recordings:
    def __init__(self, settings: Settings, writer: RecordingWriter | None = None) -> None:
        self.settings = settings
        self.root = Path(settings.data_dir) / "recordings"
        self.rate = settings.recording_sample_rate
        self.writer = writer or RecordingWriter()
        self.hooks = FinishedHooks(settings.recording_hook, settings.recording_webhook_url)
        self._live: set[Path] = set()  # files being written; touched by loop and writer
        self._lock = threading.Lock()

    def wanted(self, requested: bool) -> bool:
        return requested or self.settings.record_sessions

    def attach(
        self,
        session: VoiceSession,
        *,
        tenant_id: str,
        session_id: str,
        requested: bool,
        options: SessionOptions,
    ) -> CallRecorder | None:
        """A recorder tapped into `session` if this stream is to be recorded, else None."""
        if not self.wanted(requested):
            return None
        started_at = datetime.now(UTC)
        try:
            folder = files.directory(self.root, tenant_id, session_id)
        except ValueError as exc:
            log.warning("session %s is not recorded: %s", session_id, exc)
            return None
        path = folder / files.file_name(started_at)
        recorder = CallRecorder(
            self.writer,
            path,
            rate=self.rate,
            caller_format=options.input_format,
            agent_rate=options.output_format.sample_rate,
            started_at=started_at,
            meta={"tenant_id": tenant_id, "session_id": session_id},
            on_finished=self._finished,
        )
        with self._lock:
            self._live.add(path)
        session.audio_tap = recorder
        previous = session.events.on_event  # metrics may observe events too: call them on

        def on_event(event) -> None:
            recorder.on_event(event)
            if previous is not None:
                previous(event)

        session.events.on_event = on_event
        return recorder

    def _finished(self, finished: Finished) -> None:
        """In the writer thread, the moment a file is complete: hand it over."""
        with self._lock:
            self._live.discard(finished.path)
        self.hooks.submit(finished.path, metadata(finished))

    def detach(self, recorder: CallRecorder) -> None:
        """The stream ended: finish its file (in the writer, soon)."""
        future = recorder.close()
        future.add_done_callback(lambda _: self._forget(recorder.path))

    def _forget(self, path: Path) -> None:
        with self._lock:
            self._live.discard(path)

    def live_paths(self) -> set[Path]:
        with self._lock:
            return set(self._live)

    async def settle(self, timeout: float = SETTLE_S) -> None:
        """Wait (briefly) until what was queued before now is on disk, closes included."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(self.writer.barrier()), timeout)

    async def list(self, tenant_id: str, session_id: str) -> list[RecordingFile]:
        await self.settle()
        folder = files.directory(self.root, tenant_id, session_id)
        return await asyncio.to_thread(files.listing, folder, self.live_paths())

    async def find(self, tenant_id: str, session_id: str, name: str | None) -> RecordingFile | None:
        """The named recording, or the latest complete one."""
        found = await self.list(tenant_id, session_id)
        if name is None:
            complete = [f for f in found if f.complete]
            return complete[-1] if complete else None
        return next((f for f in found if f.name == name), None)

    async def sweep(self) -> int:
        days = self.settings.recording_retention_days
        if days <= 0:
            return 0
        return await asyncio.to_thread(files.sweep, self.root, days * 86400, self.live_paths())

    async def run_retention(self) -> None:
        """RECORDING_RETENTION_DAYS: sweep at start-up, then every hour (sooner for short
        retentions), for as long as the core runs."""
        period = min(MAX_SWEEP_PERIOD_S, max(1.0, self.settings.recording_retention_days * 8640))
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("recordings: retention sweep failed")
            await asyncio.sleep(period)

    async def aclose(self) -> None:
        """After the last stream: finish every file, then let the hand-overs complete."""
        await asyncio.to_thread(self.writer.stop, 30.0)
        await asyncio.to_thread(self.hooks.shutdown)


def metadata(finished: Finished) -> dict:
    """What RECORDING_HOOK and RECORDING_WEBHOOK_URL receive about a finished recording."""
    sid, name = finished.meta.get("session_id", ""), finished.path.name
    return {
        "event": "recording.finished",
        "tenant_id": finished.meta.get("tenant_id", ""),
        "session_id": sid,
        "name": name,
        "path": str(finished.path),
        "started_at": finished.started_at.isoformat(),
        "ended_at": finished.ended_at.isoformat(),
        "duration_s": round(finished.duration_s, 3),
        "bytes": finished.bytes,
        "format": "wav",
        "sample_rate": finished.sample_rate,
        "channels": ["caller", "agent"],
        "dropped_ms": round(finished.dropped_ms),
        "download": f"/sessions/{sid}/recording?name={name}",
    }
