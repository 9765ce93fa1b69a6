"""systemd notify: READY/STOPPING/STATUS datagrams to ``$NOTIFY_SOCKET``.

A no-op when corral does not run under systemd (``Type=notify`` units only).
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send `state` (e.g. "READY=1") to systemd; False when there is no socket."""
    address = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False
