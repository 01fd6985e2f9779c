"""A private network for WebRTC tests: this process's own network namespace.

ICE ignores loopback (aioice skips 127.0.0.1 and ::1, Chromium too), so calls need real
interface addresses; those must never be the machine's own. The test runs its scenario under
`unshare -n` and the scenario adds a veth pair with 10.77.0.1 and 10.77.0.2: ICE candidates,
the server, the fake OpenAI and the browser then all live inside the namespace, and no packet
can leave it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import ifaddr

ROOT = Path(__file__).resolve().parent.parent
ADDRESSES = ("10.77.0.1", "10.77.0.2")
LINKS = (
    "link set lo up",
    "link add va type veth peer name vb",
    f"addr add {ADDRESSES[0]}/24 dev va",
    f"addr add {ADDRESSES[1]}/24 dev vb",
    "link set va up",
    "link set vb up",
)


def unavailable() -> str | None:
    """Why a namespace cannot be made here, or None when it can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "-n", "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace with a veth pair: {probe.stderr.strip()}"
    return None


def command(module: str, *args: str) -> list[str]:
    """Run `python -m module args` in a new network namespace."""
    return ["unshare", "-n", sys.executable, "-m", module, *args]


def set_up() -> None:
    """Inside the new namespace: bring up lo and the veth pair. Refuses to touch a namespace
    that already has other interfaces (it could be the machine's own)."""
    names = {adapter.nice_name for adapter in ifaddr.get_adapters()}
    if names - {"lo"}:
        raise RuntimeError(f"not a fresh network namespace (interfaces: {sorted(names)})")
    for line in LINKS:
        subprocess.run(["ip", *line.split()], check=True)


def socket_database(url: str) -> bool:
    """A Unix-socket Postgres URL reaches the database from inside the namespace; a TCP one
    (e.g. 127.0.0.1) would name the namespace's own loopback, where nothing listens."""
    parts = urlsplit(url)
    return parts.hostname is None or parts.hostname.startswith("/")


async def run(module: str, *args: str, timeout: float = 200) -> tuple[dict, str]:
    """Run a scenario in a new namespace; its `RESULT <json>` line and its stderr."""
    proc = await asyncio.create_subprocess_exec(
        *command(module, *args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    log = err.decode(errors="replace")
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :]), log
    raise AssertionError(f"{module} printed no result (exit {proc.returncode}):\n{log[-4000:]}")
