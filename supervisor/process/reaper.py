"""The work after a provider's exit that may take time, off the pipe loop: :class:`Reaper`.

When a provider's leader exits, what it left must be killed while its zombie
still pins its PID, and then it is reaped (see
:meth:`~corral.supervisor.process.tree.DescendantTracker.kill_leftovers`).
That walks ``/proc`` and may wait for processes to die, so it never runs on
the :class:`~corral.supervisor.process.loop.PipeLoop`: the loop hands each
exit here.  A few worker threads (``corral-reaper-N``, at most
``MAX_WORKERS``, started on demand) take the exits queued so far in
*batches* (a fair share of the queue, at most ``BATCH_MAX``), and every exit
of a batch shares one scan of ``/proc``
(:class:`ProcScan`): when a thousand providers end at once (a daemon
shutdown), ``/proc`` is read a few times, not a thousand.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable

from corral.supervisor.process.process_wide import ProcessWide
from corral.supervisor.process.procfs import ProcStat, all_stats

__all__ = ["BATCH_MAX", "MAX_WORKERS", "ProcScan", "Reaper", "default_reaper"]

log = logging.getLogger("corral.process")

#: Threads that handle exits at most.
MAX_WORKERS = 4
#: Exits one worker takes at once (and serves with one scan of ``/proc``).
BATCH_MAX = 64


class ProcScan:
    """One read of ``/proc``, taken on first use and shared by the exits of a batch.

    Taken after every exit of the batch was seen (their zombies pin their
    ids), so whatever is in one of their sessions at that moment is in it.
    """

    def __init__(self) -> None:
        self._by_session: dict[int, list[ProcStat]] | None = None

    def session_members(self, sid: int) -> list[ProcStat]:
        """The live processes of session ``sid`` at the time of the scan, by PID."""
        if self._by_session is None:
            by_session: dict[int, list[ProcStat]] = defaultdict(list)
            for st in all_stats():
                if not st.dead:
                    by_session[st.session].append(st)
            self._by_session = by_session
        return sorted(self._by_session.get(sid, []))


class Reaper:
    """Runs exit jobs (``job(scan)``) on a few threads, a batch at a time."""

    def __init__(self, name: str = "corral-reaper", max_workers: int = MAX_WORKERS) -> None:
        self._name = name
        self._max = max(1, max_workers)
        self._lock = threading.Lock()
        self._jobs: deque[Callable[[ProcScan], None]] = deque()
        self._idle = 0  # workers waiting for jobs
        self._workers: list[threading.Thread] = []
        self._cond = threading.Condition(self._lock)

    def submit(self, job: Callable[[ProcScan], None]) -> None:
        """Queue ``job``; it runs on a worker thread with its batch's scan."""
        with self._lock:
            self._jobs.append(job)
            try:
                self._wake_locked()
            except RuntimeError:  # out of threads
                if self._workers:
                    return  # a worker will get to it
                self._jobs.remove(job)
            else:
                return
        log.warning("%s: no thread for an exit; handled by the caller", self._name)
        job(ProcScan())

    def _wake_locked(self) -> None:
        """Wake an idle worker, or start one (``RuntimeError`` if no thread can start)."""
        self._workers = [t for t in self._workers if t.is_alive()]
        if self._idle:
            self._cond.notify()
        elif len(self._workers) < self._max:
            thread = threading.Thread(
                target=self._main,
                name=f"{self._name}-{len(self._workers) + 1}",
                daemon=True,
            )
            thread.start()
            self._workers.append(thread)

    @property
    def workers(self) -> int:
        """How many worker threads exist."""
        with self._lock:
            return len(self._workers)

    def _main(self) -> None:
        while True:
            with self._lock:
                while not self._jobs:
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                # A fair share, so the other workers run exits beside this one.
                share = min(BATCH_MAX, -(-len(self._jobs) // self._max))
                batch = [self._jobs.popleft() for _ in range(share)]
                if self._jobs:
                    with contextlib.suppress(RuntimeError):  # out of threads: this one goes on
                        self._wake_locked()
            scan = ProcScan()
            for job in batch:
                try:
                    job(scan)
                except Exception:
                    log.exception("%s: an exit job failed", self._name)


_default = ProcessWide(Reaper)


def default_reaper() -> Reaper:
    """The process-wide reaper, created on first use."""
    return _default.get()
