"""What every provider that runs a CLI shares: finding its binary, its version.

:func:`find_binary` searches, in order, the configured path, an environment
variable, ``PATH`` and well-known locations (``~`` is the given env's HOME, not
the daemon's), and reports every place searched for error messages.
:func:`binary_version` runs ``<binary> --version`` (bounded). ``agent.start``
asks a provider's availability on the registry thread, so only a probe
(``daemon.info``) may run the binary: :class:`VersionCache` keeps what the last
probe found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping


def expand_home(path: str, env: Mapping[str, str]) -> str | None:
    """``~`` expanded with the env's HOME (not the daemon's); None if it cannot be."""
    if path != "~" and not path.startswith("~/"):
        return path
    home = env.get("HOME")
    if not home:
        return None
    return home.rstrip("/") + path[1:]


def is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_binary(
    name: str,
    configured: str | None,
    env_var: str,
    env: Mapping[str, str],
    fallbacks: Iterable[str],
) -> tuple[str | None, list[str]]:
    """(the first executable found or None, every place searched in order)."""
    searched: list[str] = []
    for explicit in (configured, env.get(env_var)):
        if not explicit:
            continue
        path = expand_home(explicit, env)
        searched.append(path or explicit)
        if path is not None and is_executable(path):
            return path, searched
    entries = [entry for entry in env.get("PATH", "").split(os.pathsep) if entry]
    searched.extend(os.path.join(entry, name) for entry in entries)
    if entries:
        found = shutil.which(name, path=os.pathsep.join(entries))
        if found:
            return found, searched
    for location in fallbacks:
        path = expand_home(location, env)
        if path is None:
            continue
        searched.append(path)
        if is_executable(path):
            return path, searched
    return None, searched


def binary_version(binary: str, timeout: float = 5.0) -> str | None:
    """The first line of ``binary --version``, or None if it fails."""
    try:
        proc = subprocess.run(
            [binary, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    version = proc.stdout.strip()
    if proc.returncode != 0 or not version:
        return None
    return version.splitlines()[0]


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
