"""Recording files on disk: where they go, what a listing says, and retention.

Why a layout rather than a table: a recording is one self-describing WAV file under
DATA_DIR/recordings/<tenant>/<session id>/<stream start>.wav, so listing, downloading and
deleting need no database, survive its outages, and an operator can read (or rsync) the tree
directly. Names are the stream's UTC start with microseconds, so they sort in time order and
never hold anything but digits. Everything here blocks (it touches the disk): call it from a
worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import wave
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)
NAME_FORMAT = "%Y%m%dT%H%M%S.%fZ"
NAME_PATTERN = r"^\d{8}T\d{6}\.\d{6}Z\.wav$"
NAME_RE = re.compile(NAME_PATTERN)
SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # tenant ids, session UUIDs
HEADER_BYTES = 44


def directory(root: Path, tenant_id: str, session_id: str) -> Path:
    """The session's recordings folder; refuses ids that could leave `root`."""
    for part in (tenant_id, session_id):
        if not SAFE_PART.match(part):
            raise ValueError(f"unsafe path component {part[:70]!r}")
    return root / tenant_id / session_id


def file_name(started_at: datetime) -> str:
    return started_at.astimezone(UTC).strftime(NAME_FORMAT) + ".wav"


def started_at_of(name: str) -> datetime:
    return datetime.strptime(name.removesuffix(".wav"), NAME_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class RecordingFile:
    name: str
    path: Path
    started_at: datetime
    duration_s: float
    bytes: int
    sample_rate: int
    channels: int
    complete: bool


def describe(path: Path, complete: bool = True) -> RecordingFile | None:
    """One file's listing entry (from its WAV header), None if it is gone or unreadable."""
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as wav:
            rate, channels = wav.getframerate(), wav.getnchannels()
            frames = wav.getnframes()
    except (OSError, EOFError, wave.Error):
        return None
    if not complete:  # the header may lag the data written since; the size does not
        frames = max(frames, (size - HEADER_BYTES) // (2 * channels))
    return RecordingFile(
        name=path.name,
        path=path,
        started_at=started_at_of(path.name),
        duration_s=round(frames / rate, 3),
        bytes=size,
        sample_rate=rate,
        channels=channels,
        complete=complete,
    )


def listing(folder: Path, live: set[Path]) -> list[RecordingFile]:
    """The folder's recordings, oldest first; `live` are still being written."""
    try:
        names = sorted(n for n in os.listdir(folder) if NAME_RE.match(n))
    except FileNotFoundError:
        return []
    found = (describe(folder / n, folder / n not in live) for n in names)
    return [f for f in found if f is not None]


def sweep(root: Path, max_age_s: float, live: set[Path]) -> int:
    """Delete recordings last written more than `max_age_s` ago (never a live one), then
    empty session and tenant folders; returns how many files went."""
    cutoff = time.time() - max_age_s
    busy = {p.parent for p in live}
    deleted = 0
    try:
        tenants = list(root.iterdir())
    except FileNotFoundError:
        return 0
    for tenant in tenants:
        if not tenant.is_dir():
            continue
        for session in list(tenant.iterdir()):
            if not session.is_dir():
                continue
            for path in list(session.iterdir()):
                if not NAME_RE.match(path.name) or path in live:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
                        deleted += 1
            if session not in busy:
                with contextlib.suppress(OSError):  # not empty: it stays
                    session.rmdir()
        if not any(p.parent == tenant for p in busy):
            with contextlib.suppress(OSError):
                tenant.rmdir()
    if deleted:
        log.info(
            "recordings: deleted %d file(s) older than %.1f day(s)", deleted, max_age_s / 86400
        )
    return deleted
