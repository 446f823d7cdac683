"""systemd's notification protocol (Type=notify): READY, RELOADING, STOPPING, WATCHDOG."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings (half of WATCHDOG_USEC), None when not asked for."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000


def notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)
