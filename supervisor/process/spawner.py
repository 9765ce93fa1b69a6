"""Spawning every provider from one long-lived thread, so that it dies with the daemon.

``PR_SET_PDEATHSIG`` makes the kernel signal a child when its parent dies,
but "parent" is the *thread* that forked it: the signal comes when that
thread exits, not only when the process does.  Sessions start their
providers from their own actor threads, which end when the session retires,
so a parent-death signal set in a child forked there would kill it early.
Hence one thread, ``corral-spawner`` (:class:`Spawner`;
:func:`default_spawner` is the process-wide one), forks every provider and
lives as long as the process: it takes spawn requests from a queue, runs
each and hands the result, or the exception, back to the caller, which
waits at most ``timeout`` seconds (``TimeoutError`` then; a spawn that
completes after its caller gave up is passed to the request's ``abandon``
callback, which kills it).

:func:`die_with_parent` is the ``preexec_fn`` that sets the signal (SIGKILL)
in the child between fork and exec, then checks that its parent is still the
process that forked it: a daemon that died before the ``prctl`` left an
orphan, which kills itself.  :func:`spawn_provider` spawns one provider that
way in its own session, registers it with the descendant tracker under the
tracker's ``spawn_lock`` and records it in the provider ledger.

Limits: the signal reaches the provider itself only (the setting is cleared
in its own children), so descendants that outlive it, such as tools started
under ``setsid``, are left to the next start's sweep
(:mod:`~corral.supervisor.process.sweep`), which finds them through the
ledger (:mod:`~corral.supervisor.process.ledger`).  Off Linux, or when the
``prctl`` fails, no signal is set.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from corral.supervisor.process.ledger import ProviderLedger
from corral.supervisor.process.process_wide import ProcessWide
from corral.supervisor.process.procfs import proc_stat
from corral.supervisor.process.tree import DescendantTracker, ProcessTree

__all__ = [
    "SPAWN_TIMEOUT",
    "Spawner",
    "default_spawner",
    "die_with_parent",
    "release",
    "spawn_provider",
]

log = logging.getLogger("corral.process")

#: How long a caller waits for its spawn (queued behind others, then forked).
SPAWN_TIMEOUT = 30.0
# After an abandoned spawn's SIGKILL: how long to wait for it, to reap it.
_ABANDON_WAIT = 5.0
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


class _Request(Generic[T]):
    """One call for the spawner thread, and its outcome."""

    __slots__ = ("abandon", "abandoned", "done", "error", "finished", "fn", "lock", "result")

    def __init__(self, fn: Callable[[], T], abandon: Callable[[T], None] | None) -> None:
        self.fn = fn
        self.abandon = abandon
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.finished = False  # guarded by lock
        self.abandoned = False  # guarded by lock
        self.result: T | None = None
        self.error: BaseException | None = None


class Spawner:
    """One thread that runs every spawn handed to it, in order.

    The thread starts with the first :meth:`run` and lives until
    :meth:`close` (never, for :func:`default_spawner`): whatever it forked
    with :func:`die_with_parent` is killed when it ends.
    """

    def __init__(self, name: str = "corral-spawner") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[_Request[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def thread(self) -> threading.Thread | None:
        """The spawning thread, once started."""
        return self._thread

    def run(
        self,
        fn: Callable[[], T],
        *,
        timeout: float = SPAWN_TIMEOUT,
        abandon: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``fn`` on the spawner thread; its result, or its exception raised here.

        Raises ``TimeoutError`` if it has not finished after ``timeout``
        seconds; its result is then given to ``abandon`` (on the spawner
        thread) once it finishes.  ``RuntimeError`` after :meth:`close`.
        """
        if threading.current_thread() is self._thread:
            return fn()
        request: _Request[T] = _Request(fn, abandon)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: closed")
            if self._thread is None:
                thread = threading.Thread(target=self._main, name=self.name, daemon=True)
                thread.start()
                self._thread = thread
            self._queue.put(request)
        if not request.done.wait(max(0.0, timeout)):
            with request.lock:
                if not request.finished:
                    request.abandoned = True
                    raise TimeoutError(f"{self.name}: spawn not done after {timeout:.1f}s")
        if request.error is not None:
            raise request.error
        return request.result  # type: ignore[return-value]

    def close(self, timeout: float = 5.0) -> None:
        """End the thread once the queued requests ran (its children then get their signal)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _main(self) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            result: Any = None
            error: BaseException | None = None
            try:
                result = request.fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                error = exc
            with request.lock:
                request.result, request.error = result, error
                request.finished = True
                abandoned = request.abandoned
            request.done.set()
            if abandoned:
                if error is not None:
                    log.warning("%s: an abandoned spawn failed: %s", self.name, error)
                elif request.abandon is not None:
                    try:
                        request.abandon(result)
                    except Exception:
                        log.exception("%s: cleaning up an abandoned spawn failed", self.name)


_default = ProcessWide(Spawner)


def default_spawner() -> Spawner:
    """The process-wide spawner (never closed: it must outlive every provider)."""
    return _default.get()


@functools.lru_cache(maxsize=1)
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (AttributeError, OSError):
        return None
    return prctl


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``sig`` when the forking thread ends.

    Then, if its parent is no longer ``parent`` (it died before the
    ``prctl``: the child was reparented already), the child SIGKILLs itself.
    Everything it needs is looked up here, before the fork.
    """
    prctl = _prctl()
    args = (
        ctypes.c_int(_PR_SET_PDEATHSIG),
        ctypes.c_ulong(sig),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    getppid, kill, getpid = os.getppid, os.kill, os.getpid

    def preexec() -> None:
        if prctl is not None:
            prctl(*args)
        if getppid() != parent:
            kill(getpid(), signal.SIGKILL)

    return preexec


def spawn_provider(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    stdin_pipe: bool,
    tracker: DescendantTracker,
    ledger: ProviderLedger | None,
    name: str,
    spawner: Spawner | None = None,
    timeout: float = SPAWN_TIMEOUT,
) -> tuple[subprocess.Popen[bytes], ProcessTree]:
    """Spawn a provider (stdout and stderr piped) from the spawner thread.

    It leads a session of its own and dies with the daemon
    (:func:`die_with_parent`); it is registered with ``tracker`` under its
    ``spawn_lock`` and recorded in ``ledger`` (if any) with its descendants.
    Raises what ``Popen`` raises (``OSError``), ``RuntimeError`` if the
    tracker is closed, ``TimeoutError`` after ``timeout`` seconds.
    """

    def spawn() -> tuple[subprocess.Popen[bytes], ProcessTree]:
        with tracker.spawn_lock:
            if tracker.closed:
                raise RuntimeError(f"{name}: the descendant tracker is closed")
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env=env,
                close_fds=True,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
                bufsize=0,
            )
            tree = tracker.add(proc.pid)
        if ledger is not None:
            st = proc_stat(proc.pid)
            ledger.add(
                proc.pid,
                tree.leader_start,
                name=name,
                pgid=st.pgrp if st is not None else proc.pid,
                sid=st.session if st is not None else proc.pid,
                descendants=lambda: tracker.snapshot(tree),
            )
        return proc, tree

    def abandon(spawned: tuple[subprocess.Popen[bytes], ProcessTree]) -> None:
        proc, tree = spawned
        log.warning("%s: spawned pid %d after its caller gave up; killing it", name, proc.pid)
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_ABANDON_WAIT)
        release(tracker, tree, ledger, proc.pid)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    return (spawner or default_spawner()).run(spawn, timeout=timeout, abandon=abandon)


def release(
    tracker: DescendantTracker,
    tree: ProcessTree | None,
    ledger: ProviderLedger | None,
    pid: int,
) -> None:
    """The provider ``pid`` exited: stop tracking ``tree`` and take it out of ``ledger``."""
    try:
        if tree is not None:
            tracker.remove(tree)
    finally:
        if ledger is not None:
            ledger.remove(pid)
