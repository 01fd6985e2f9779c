"""Handing finished recordings to the operator's storage: a Python hook and/or a webhook.

Why both: RECORDING_HOOK ("module:function", called with the file's path and its metadata)
runs in this process and can upload the file itself (S3, GCS, a NAS) or move it; the webhook
(RECORDING_WEBHOOK_URL, POSTed the metadata as JSON) suits storage that lives in another
service, which then fetches the file from GET /sessions/{id}/recording. Both run in one
worker thread, one recording after the other, so a slow upload never delays the event loop or
the recording writer; failures are logged (the webhook is retried a few times) and the file
stays where it is either way.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

log = logging.getLogger(__name__)
Hook = Callable[[Path, dict], object]
WEBHOOK_TIMEOUT_S = 10.0
WEBHOOK_ATTEMPTS = 3


def load_hook(spec: str) -> Hook:
    """RECORDING_HOOK's function; RuntimeError (start-up fails, naming it) if it cannot be."""
    module_name, _, name = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise RuntimeError(f"RECORDING_HOOK {spec!r} cannot be loaded: {exc}") from None
    if not callable(function):
        raise RuntimeError(f"RECORDING_HOOK {spec!r} is not callable")
    return function


def post_json(url: str, body: dict, timeout: float = WEBHOOK_TIMEOUT_S) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "voiceagent-recordings"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only
        return response.status


class FinishedHooks:
    def __init__(self, hook: str | None, webhook_url: str | None) -> None:
        self.function = load_hook(hook) if hook else None
        self.url = webhook_url
        self._executor: ThreadPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self.function is not None or self.url is not None

    def submit(self, path: Path, metadata: dict) -> Future | None:
        """Queue the hand-over (called from the recording writer thread; returns at once)."""
        if not self.enabled:
            return None
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="recording-hooks")
        return self._executor.submit(self._run, path, metadata)

    def _run(self, path: Path, metadata: dict) -> None:
        if self.function is not None:
            try:
                self.function(path, dict(metadata))
            except Exception:
                log.exception("RECORDING_HOOK failed for %s", path)
        if self.url is not None:
            self._post(metadata)

    def _post(self, metadata: dict) -> None:
        assert self.url is not None  # only called when a webhook URL is set
        for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
            try:
                status = post_json(self.url, metadata)
                if status < 300:
                    return
                problem = f"HTTP {status}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break  # the receiver refuses it: retrying will not help
            except (OSError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < WEBHOOK_ATTEMPTS:
                time.sleep(attempt)
        log.warning(
            "RECORDING_WEBHOOK_URL: could not deliver recording %s (%s)",
            metadata.get("name"),
            problem,
        )

    def shutdown(self) -> None:
        """Let queued hand-overs finish (blocking: call it off the loop)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
