"""`python -m server` (what `make run` runs): serve until SIGINT/SIGTERM, then shut down cleanly.

Start-up problems (bad settings, a provider that cannot load, an unreachable database) end the
process with exit code 2 and one message saying what to fix, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from server import logs
from server.app import VoiceServer
from server.config import Settings
from server.observe import metrics
from server.persistence.database import DatabaseUnavailable
from server.providers import ProviderSetupError
from server.sessions.tools import ToolSetsError

log = logging.getLogger("server")


async def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.install(settings.log_level, settings.log_format)
    try:
        server = VoiceServer(settings)
    except ProviderSetupError as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    try:
        await server.start()
    except (DatabaseUnavailable, RuntimeError, ToolSetsError) as exc:  # a port, UnsafeBind
        log.error("%s", exc)
        await server.stop()  # whatever did start (the embedded Postgres, say) stops again
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    metrics.process_exit()  # multi-process metrics: this process's gauges stop counting


if __name__ == "__main__":
    asyncio.run(main())
