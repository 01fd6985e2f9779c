"""uvicorn inside the server's own event loop, next to gRPC.

The socket is bound here rather than by uvicorn, so port 0 works (tests) and a busy port
fails start-up with an exception instead of uvicorn's sys.exit. uvicorn's own signal
handling is left out: the process's SIGINT/SIGTERM handlers stop the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from server.http import redact
from server.http.audio_codec import MAX_UPLOAD_BYTES

# One base64 recording of the largest allowed upload, plus its JSON envelope.
WS_MAX_MESSAGE_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 64 * 1024
WORKER_HEADER = "X-Voiceagent-Worker"


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass


def bind(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """The listening socket, with TCP_NODELAY for every connection it accepts; `reuse_port`
    (workers of one parent, server/workers): SO_REUSEPORT, shared with the other workers.

    asyncio turns Nagle's algorithm off only on sockets whose `proto` is IPPROTO_TCP, and
    `socket.create_server` leaves it 0, so a kept-alive HTTP connection's response would wait
    for the client's delayed ACK (~40 ms per request). Linux copies TCP_NODELAY from the
    listening socket to accepted ones.
    """
    host = host.strip("[]")
    try:
        if ":" in host:
            sock = socket.create_server(
                (host, port),
                family=socket.AF_INET6,
                dualstack_ipv6=host == "::",
                reuse_port=reuse_port,
            )
        else:
            sock = socket.create_server((host, port), reuse_port=reuse_port)
    except OSError as exc:
        raise RuntimeError(f"cannot bind HTTP to {host}:{port}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class HttpServer:
    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        shutdown_grace_s: float,
        worker: int | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, key) PEM files. uvicorn wraps the pre-bound socket in TLS too
        (it passes `config.ssl` to `loop.create_server(sock=...)`). `worker`: this process is
        worker number `worker` of a parent: the port is shared (SO_REUSEPORT) and every
        response says which worker answered (`X-Voiceagent-Worker`)."""
        self.host, self.requested_port, self.worker = host, port, worker
        redact.install()
        cert, key = tls or (None, None)
        self.config = uvicorn.Config(
            app,
            loop="none",
            lifespan="off",
            log_config=None,
            ws_max_size=WS_MAX_MESSAGE_BYTES,
            timeout_graceful_shutdown=max(1, round(shutdown_grace_s)),
            ssl_certfile=cert,
            ssl_keyfile=key,
            headers=[(WORKER_HEADER, str(worker))] if worker else None,
        )
        self.server = _EmbeddedServer(self.config)
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        sock = bind(self.host, self.requested_port, reuse_port=self.worker is not None)
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="http")
        while not self.server.started:
            if self._task.done():  # failed during start-up
                sock.close()
                self._task.result()
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        return self.port

    async def stop(self) -> None:
        """Stop listening, close idle connections and WebSockets, wait for responses."""
        if self._task is None:
            return
        self.server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
