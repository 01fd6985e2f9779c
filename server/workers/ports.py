"""The parent's hold on the ports its workers share.

Workers listen with SO_REUSEPORT, and Linux lets any process of the same user join such a
port, so without care a second server started on a busy port would silently share it. The
parent therefore binds each port first WITHOUT SO_REUSEPORT (fails, clearly, if anyone holds
the port, a foreign SO_REUSEPORT group included) and only then sets SO_REUSEPORT on its own
socket, so that its workers, and only processes binding after it with SO_REUSEPORT, can join.
The parent's socket never listens, so the kernel hands it no connection; it only keeps the
port (and a port 0 picked by the OS) reserved while workers restart.
"""

from __future__ import annotations

import socket


def reserve(host: str, port: int, what: str) -> socket.socket:
    """A bound, non-listening socket holding `host:port` for workers; RuntimeError naming
    `what` (gRPC, HTTP) if the port is taken."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot bind {what} to {host}:{port}: {exc}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])
