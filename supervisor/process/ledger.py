"""The provider ledger: the provider processes a daemon runs, on disk for its next start.

A daemon killed outright (SIGKILL, the OOM killer) cannot stop its
providers.  Each provider dies with it (see
:mod:`~corral.supervisor.process.spawner`), but what the provider started
may not, so the daemon keeps a list of what runs: one entry per live
provider with its PID and start time (``/proc/<pid>/stat`` field 22: with
the PID it names the process across PID reuse), its process group and
session, the name it was given (``<provider>:<session id>``) and that session
id, and its descendants as the descendant tracker last saw them (PID ->
start time).  The next start reads it (:func:`read_ledger`) and kills what
is left (:mod:`~corral.supervisor.process.sweep`).

The file (:data:`LEDGER_NAME` in the data directory) is rewritten whole and
atomically (temporary file, rename) when a
provider is added, when one is removed (once it was reaped), and when the
descendants of one changed: a thread, ``corral-ledger``, looks every
``interval`` seconds while providers run.  Failing writes are logged and
never stop a provider.  It is not fsynced: it guards against the daemon
process dying, which leaves the page cache intact; a machine that loses power
loses every provider with it (an fsync per start cost the thousandth start
of a thousand sessions several times the first).

The daemon installs its ledger with :func:`install`; a
:class:`~corral.supervisor.process.ProviderProcess` not given one records in
:func:`current_ledger` (nothing is recorded when none is installed).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "LEDGER_INTERVAL",
    "LEDGER_NAME",
    "LedgerEntry",
    "ProviderLedger",
    "current_ledger",
    "install",
    "read_ledger",
    "write_ledger",
]

log = logging.getLogger("corral.process")

#: The ledger's file name in the data directory.
LEDGER_NAME = "providers.json"
#: Seconds between two looks at the providers' descendants.
LEDGER_INTERVAL = 1.0
#: Past this many live providers the descendants are asked for less often
#: (1,000: every 4 s), so the cost per second stays flat.
SCALE_LIVE = 250
#: Removals this close together are written together (see ProviderLedger.remove).
REMOVE_COALESCE_S = 0.2
#: At most this many descendants are recorded per provider.
MAX_DESCENDANTS = 1024
_FORMAT = 1


@dataclass(frozen=True)
class LedgerEntry:
    """One provider process as recorded."""

    pid: int
    start: int
    pgid: int
    sid: int
    name: str = ""
    session: str = ""
    descendants: Mapping[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start": self.start,
            "pgid": self.pgid,
            "sid": self.sid,
            "name": self.name,
            "session": self.session,
            "descendants": sorted([pid, start] for pid, start in self.descendants.items()),
        }

    @classmethod
    def from_json(cls, raw: Any) -> LedgerEntry | None:
        """The entry ``raw`` describes; ``None`` if it is not a valid one."""
        if not isinstance(raw, dict):
            return None
        pid, start, pgid, sid = (
            _int(raw.get(key), low)
            for key, low in (("pid", 1), ("start", 0), ("pgid", 0), ("sid", 0))
        )
        if pid is None or start is None or pgid is None or sid is None:
            return None
        descendants: dict[int, int] = {}
        pairs = raw.get("descendants")
        for pair in pairs if isinstance(pairs, list) else []:
            if isinstance(pair, list) and len(pair) == 2:
                dpid, dstart = _int(pair[0], 1), _int(pair[1], 0)
                if dpid is not None and dstart is not None:
                    descendants[dpid] = dstart
        name, session = raw.get("name"), raw.get("session")
        return cls(
            pid,
            start,
            pgid,
            sid,
            name if isinstance(name, str) else "",
            session if isinstance(session, str) else "",
            descendants,
        )


def _int(value: Any, low: int) -> int | None:
    """``value`` if it is an integer (not a bool) of at least ``low``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= low:
        return value
    return None


def read_ledger(path: Path) -> list[LedgerEntry]:
    """The entries recorded in ``path``; empty if there is none or it cannot be read.

    A file that is not a ledger is logged and taken as empty; invalid
    entries are left out.
    """
    try:
        raw = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("provider ledger %s: cannot read it: %s", path, exc)
        return []
    providers = raw.get("providers") if isinstance(raw, dict) else None
    if not isinstance(providers, list):
        log.warning("provider ledger %s: not a ledger; ignored", path)
        return []
    entries = [LedgerEntry.from_json(item) for item in providers]
    return [entry for entry in entries if entry is not None]


def write_ledger(path: Path, entries: list[LedgerEntry]) -> None:
    """Replace ``path`` with these entries, atomically (raises ``OSError``)."""
    data = orjson.dumps(
        {"format": _FORMAT, "pid": os.getpid(), "providers": [e.to_json() for e in entries]}
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass
class _Live:
    entry: LedgerEntry
    descendants: Callable[[], Mapping[int, int]] | None


class ProviderLedger:
    """The live providers of this process, kept in ``path`` (see the module docstring).

    Thread-safe.  :meth:`add` writes the file before it returns, and so does
    :meth:`remove` unless removals come in a burst (then they are written
    together, see there); :meth:`close` writes what is pending and ends the
    thread (the file stays as it is).
    """

    def __init__(self, path: Path, interval: float = LEDGER_INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._live: dict[int, _Live] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        self._dirty = False  # removals not written yet
        self._removed_at = -math.inf  # when a removal was last written

    def add(
        self,
        pid: int,
        start: int,
        *,
        name: str,
        pgid: int | None = None,
        sid: int | None = None,
        descendants: Callable[[], Mapping[int, int]] | None = None,
    ) -> None:
        """Record a provider that just started (its group and session: ``pid`` by default).

        ``descendants`` gives its descendants (PID -> start time) when asked;
        ``name`` is ``<provider>:<session id>``.
        """
        entry = LedgerEntry(
            pid,
            start,
            pid if pgid is None else pgid,
            pid if sid is None else sid,
            name,
            name.partition(":")[2],
        )
        with self._lock:
            self._live[pid] = _Live(entry, descendants)
            self._write_locked()
            if descendants is not None and not self._closed and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="corral-ledger", daemon=True)
                self._thread.start()
            self._wake.notify_all()

    def remove(self, pid: int) -> None:
        """Forget the provider ``pid`` (it was reaped); nothing if it is not recorded.

        Written at once, unless another removal was written less than
        ``REMOVE_COALESCE_S`` ago (many providers ending together, a daemon
        shutdown): then the ledger thread writes them together within that
        time (an entry left a moment too long only makes the next start's
        sweep look at a process that is gone).
        """
        with self._lock:
            if self._live.pop(pid, None) is None:
                return
            now = time.monotonic()
            if self._thread is not None and now - self._removed_at < REMOVE_COALESCE_S:
                self._dirty = True
                self._wake.notify_all()
                return
            self._removed_at = now
            self._write_locked()

    def entries(self) -> list[LedgerEntry]:
        """What is recorded now."""
        with self._lock:
            return [live.entry for live in self._live.values()]

    def refresh(self) -> bool:
        """Ask every provider for its descendants now; whether the file changed."""
        with self._lock:
            ask = [(pid, live.descendants) for pid, live in self._live.items() if live.descendants]
        seen: dict[int, dict[int, int]] = {}
        for pid, descendants in ask:
            assert descendants is not None
            try:
                found = descendants()
            except Exception:
                log.exception("provider ledger: the descendants of pid %d are unknown", pid)
                continue
            seen[pid] = dict(sorted(found.items())[:MAX_DESCENDANTS])
        with self._lock:
            changed = False
            for pid, found in seen.items():
                live = self._live.get(pid)
                if live is not None and live.entry.descendants != found:
                    live.entry = replace(live.entry, descendants=found)
                    changed = True
            if changed:
                self._write_locked()
        return changed

    def close(self, timeout: float = 5.0) -> None:
        """End the thread; idempotent.  :meth:`add` and :meth:`remove` still write."""
        with self._lock:
            self._closed = True
            if self._dirty:
                self._write_locked()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _write_locked(self) -> None:
        self._dirty = False
        try:
            write_ledger(self.path, [live.entry for live in self._live.values()])
        except OSError as exc:
            log.warning("provider ledger %s: cannot write it: %s", self.path, exc)

    def _wait_locked(self, deadline: float, unless: Callable[[], bool]) -> None:
        """Wait until ``deadline``, or until :meth:`close` or ``unless()``; hold ``_lock``."""
        while not (self._closed or unless()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and not self._live and not self._dirty:
                    self._wake.wait()
                if self._closed:
                    return
                # Past SCALE_LIVE providers, refreshes come less often, in proportion;
                # an add() does not bring the next one forward.
                pause = self.interval * max(1.0, len(self._live) / SCALE_LIVE)
                self._wait_locked(time.monotonic() + pause, lambda: self._dirty)
                # Removals: written together, REMOVE_COALESCE_S after the last write.
                if self._dirty:
                    self._wait_locked(self._removed_at + REMOVE_COALESCE_S, lambda: False)
                if self._dirty:
                    self._removed_at = time.monotonic()
                    self._write_locked()
                if self._closed:
                    return
            try:
                self.refresh()
            except Exception:
                log.exception("provider ledger: refresh failed")


_current: ProviderLedger | None = None
_current_lock = threading.Lock()


def install(ledger: ProviderLedger | None) -> None:
    """Make ``ledger`` the one providers record in by default (``None``: none)."""
    global _current
    with _current_lock:
        _current = ledger


def current_ledger() -> ProviderLedger | None:
    """The ledger installed by :func:`install`, if any."""
    with _current_lock:
        return _current
