"""Which addresses to listen on: loopback while anyone could call, everywhere once keys exist.

With authentication off (no API key yet, REQUIRE_AUTH unset) the server answers everyone who
can reach it, so by default it binds loopback only and says so. Binding another interface
without authentication refuses to start unless ALLOW_UNAUTHENTICATED=true (loudly warned).
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)
LOOPBACK_NAMES = ("localhost",)


class UnsafeBind(RuntimeError):
    """A non-loopback address with authentication off and no explicit opt-in."""


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hosts(
    grpc_host: str | None, http_host: str | None, *, auth_on: bool, allow_unauthenticated: bool
) -> tuple[str, str]:
    """(gRPC host, HTTP host) to bind; UnsafeBind when that would expose an open server."""
    chosen = (
        grpc_host or ("[::]" if auth_on else "127.0.0.1"),
        http_host or ("0.0.0.0" if auth_on else "127.0.0.1"),
    )
    if auth_on:
        return chosen
    exposed = [h for h in chosen if not is_loopback(h)]
    if not exposed:
        log.warning(
            "authentication is off (no API key exists): listening on loopback only. Create a "
            "key with `python -m server.keys create --tenant <name>` to serve other hosts."
        )
        return chosen
    if not allow_unauthenticated:
        raise UnsafeBind(
            f"refusing to listen on {', '.join(exposed)} with authentication off: anyone who "
            "can reach it could use this server. Create an API key (python -m server.keys "
            "create --tenant <name>), set REQUIRE_AUTH=true, or set ALLOW_UNAUTHENTICATED=true"
        )
    log.warning(
        "ALLOW_UNAUTHENTICATED=true: listening on %s WITHOUT authentication; anyone who can "
        "reach it can open sessions and read every transcript",
        ", ".join(exposed),
    )
    return chosen
