"""The data directory's lock: one corral process at a time owns a data directory.

The daemon takes an exclusive ``flock`` on ``<data_dir>/corral.lock`` at start
and holds it for its whole life (the kernel drops it when the process ends,
``kill -9`` included, so a stale lock cannot exist). The holder writes its pid
into the file so that a second daemon can say who holds it. ``corral db vacuum``
takes the same lock, so it never runs beside a daemon. The descriptor is not
inherited by provider processes (close-on-exec), so an orphaned provider never
keeps the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from corral.supervisor.config import ConfigError

__all__ = ["LOCK_FILE", "DataDirLock", "DataDirLocked", "acquire"]

LOCK_FILE = "corral.lock"
#: How long to wait for the holder's pid to appear in the file (it writes it
#: right after locking).
PID_WAIT_S = 0.5


class DataDirLocked(ConfigError):
    """Another process holds the data directory; ``pid`` is it, when known."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class DataDirLock:
    """A held lock; :meth:`release` (or the process's end) frees it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Free the lock (idempotent). The file stays; its content no longer matters."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _holder_pid(fd: int) -> int | None:
    deadline = time.monotonic() + PID_WAIT_S
    while True:
        try:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def acquire(data_dir: Path | str, *, what: str = "daemon") -> DataDirLock:
    """Lock ``data_dir`` for this process, or raise :class:`DataDirLocked` naming the
    holder's pid. ``what`` names this process in the holder's view (logs only)."""
    path = Path(data_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _holder_pid(fd)
        os.close(fd)
        holder = f"pid {pid}" if pid is not None else "a process whose pid is not known"
        raise DataDirLocked(
            f"data directory {path.parent} is in use by another corral process ({holder}); "
            f"stop it first, or give this {what} another --data-dir",
            pid,
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return DataDirLock(path, fd)
