"""`python -m server` (what `make run` runs): serve until SIGINT/SIGTERM, then shut down cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal

from server.app import VoiceServer
from server.config import Settings
from server.persistence.database import DatabaseUnavailable


async def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = VoiceServer(settings)
    try:
        await server.start()
    except DatabaseUnavailable as exc:
        logging.getLogger("server").error("%s", exc)
        raise SystemExit(2) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    logging.getLogger("server").info("shutting down")
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
