"""`python -m server` (what `make run` runs): serve until SIGINT/SIGTERM, then shut down cleanly.

With WORKERS > 1 this process becomes the parent of that many worker processes sharing the
ports (server/workers, docs/deploy.md#workers); each worker is this same entry point, marked
by the parent's environment. With WORKERS=1 it is one process serving everything.

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
from server.config import Settings
from server.workers import role

log = logging.getLogger("server")


async def serve(settings: Settings) -> None:
    """One server process: on its own, or a worker of a parent."""
    # Imported here: the parent of several workers never loads the edges or the models.
    from server.app import VoiceServer
    from server.observe import metrics
    from server.persistence.database import DatabaseUnavailable
    from server.providers import ProviderSetupError
    from server.sessions.tools import ToolSetsError

    link = role.ParentLink.from_env()
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
    if link is not None:
        link.ready(server.port, server.http_port)

        def orphaned() -> None:
            log.warning("the parent process is gone; shutting down")
            stop.set()

        link.watch(orphaned)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    metrics.process_exit()  # multi-process metrics: this process's gauges stop counting
    if link is not None:
        link.close()


async def main() -> None:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.install(settings.log_level, settings.log_format)
    workers = settings.workers or role.cores()
    if workers > 1 and role.worker() is None:
        from server.workers.parent import run

        raise SystemExit(await run(settings, workers))
    await serve(settings)


if __name__ == "__main__":
    asyncio.run(main())
