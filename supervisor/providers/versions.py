"""A small cache of provider binaries' versions (for ``daemon.info`` details).

``agent.start`` asks a provider's availability on the registry thread, so only
a probe (``daemon.info``) may run ``<binary> --version``; a start reuses what the
last probe found. Shared by every provider that runs a CLI.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CACHE_S = 60.0


class VersionCache:
    def __init__(self, probe: Callable[[str], str | None], ttl_s: float = CACHE_S) -> None:
        self._probe = probe
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[float, str | None]] = {}

    def get(self, binary: str, *, probe: bool) -> str | None:
        """The version of ``binary``: run it only when ``probe`` and the cached one
        is older than the TTL; without ``probe``, whatever was found last (or None)."""
        with self._lock:
            cached = self._versions.get(binary)
        if not probe:
            return cached[1] if cached is not None else None
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        found = self._probe(binary)
        with self._lock:
            self._versions[binary] = (time.monotonic(), found)
        return found

    def detail(self, binary: str, *, probe: bool) -> str:
        """``"<binary> (<version>)"`` for availability details."""
        return f"{binary} ({self.get(binary, probe=probe) or 'version unknown'})"
