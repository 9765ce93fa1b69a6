"""Tests for the shared pipe loop (PipeLoop), stdin writes (StdinWriter) and exit workers
(Reaper, ProcScan), and for what they buy ProviderProcess: no thread per provider."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import logging
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from corral.supervisor.process.loop import PipeLoop, Timer
from corral.supervisor.process.reaper import BATCH_MAX, ProcScan, Reaper
from corral.supervisor.process.stdin import StdinWriter
from tests.support.proc import SLEEP, Harness, Rec, pid_alive, proc_stat, wait_until

pytestmark = pytest.mark.timeout(30)

T = TypeVar("T")
Caplog = pytest.LogCaptureFixture
_ids = itertools.count(1)
#: The pipe capacity the stdin tests set, so "full" means the same everywhere.
PIPE_CAP = 4096


def _name(kind: str) -> str:
    return f"test-{kind}-{next(_ids)}"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def parallel(*fns: Callable[[], Any]) -> list[Any]:
    """Run ``fns`` at once, each on a thread of its own; their results."""
    with ThreadPoolExecutor(len(fns)) as pool:
        futures = [pool.submit(fn) for fn in fns]
        return [f.result(20) for f in futures]


def on_loop(loop: PipeLoop, fn: Callable[[], T], timeout: float = 5.0) -> T:
    """Run ``fn`` on the loop thread and return its result (or raise its exception)."""
    future: Future[T] = Future()

    def call() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)

    loop.call_soon(call)
    return future.result(timeout)


def _watched(loop: PipeLoop) -> int:
    return on_loop(loop, lambda: loop.watched)


def _failed(caplog: Caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "corral.process" and r.exc_info]


@pytest.fixture
def loop() -> Iterator[PipeLoop]:
    pipe_loop = PipeLoop(name=_name("pipes"))
    yield pipe_loop
    pipe_loop.close()


@pytest.fixture
def lh(loop: PipeLoop, tmp_path: Path) -> Iterator[Harness]:
    """A Harness cleaned up while ``loop`` still runs (it reports the exits)."""
    harness = Harness(tmp_path)
    yield harness
    harness.cleanup()


# ------------------------------------------------------------------ PipeLoop


def test_call_soon_in_order_on_the_loop_thread_and_run_inline(loop: PipeLoop) -> None:
    assert loop.thread is None  # started by the first call
    seen: list[tuple[int, int, str]] = []

    def record(tid: int, i: int) -> None:
        seen.append((tid, i, threading.current_thread().name))

    def submit(tid: int) -> None:
        for i in range(200):
            loop.call_soon(functools.partial(record, tid, i))

    parallel(*(functools.partial(submit, tid) for tid in range(4)))
    assert wait_until(lambda: len(seen) == 800)
    assert loop.thread is not None and loop.thread.name.startswith("test-pipes-")
    assert {name for _, _, name in seen} == {loop.thread.name}
    for tid in range(4):
        assert [i for t, i, _ in seen if t == tid] == list(range(200))
    assert not loop.on_loop() and on_loop(loop, loop.on_loop)
    # run(): inline on the loop, queued elsewhere.
    order: list[str] = []

    def outer() -> None:
        order.append("before")
        loop.run(lambda: order.append("inner"))
        order.append("after")

    on_loop(loop, outer)
    assert order == ["before", "inner", "after"]
    where: Future[str] = Future()
    loop.run(lambda: where.set_result(threading.current_thread().name))
    assert where.result(5) == loop.thread.name


def test_close_joins_releases_and_refuses_calls() -> None:
    base = _fds()
    started, never, self_closed = (PipeLoop(name=_name("pipes")) for _ in range(3))
    on_loop(started, lambda: None)
    thread = started.thread
    assert thread is not None and thread.is_alive()
    started.close()
    assert not thread.is_alive()  # joined
    never.close()
    assert never.thread is None
    on_loop(self_closed, self_closed.close)  # from one of its own callbacks
    own = self_closed.thread
    assert own is not None and wait_until(lambda: not own.is_alive())
    for pipe_loop in (started, never, self_closed):
        pipe_loop.close()  # idempotent
        with pytest.raises(RuntimeError):
            pipe_loop.call_soon(lambda: None)
        with pytest.raises(RuntimeError):
            pipe_loop.run(lambda: None)
    assert wait_until(lambda: _fds() == base, 2.0), (_fds(), base)  # selectors, wake pipes


def test_timers_fire_in_deadline_order_not_before_it(loop: PipeLoop) -> None:
    fired: list[tuple[str, float, float, str]] = []  # (tag, due, ran at, thread)
    done = threading.Event()

    def fire(tag: str, due: float, then: Callable[[], object] = lambda: None) -> None:
        fired.append((tag, due, time.monotonic(), threading.current_thread().name))
        then()

    def nested() -> Timer:  # a timer scheduled from inside a timer's callback
        return loop.call_later(0.01, functools.partial(fire, "a2", time.monotonic() + 0.01))

    def schedule() -> Timer:
        now = time.monotonic()
        at = functools.partial
        loop.call_later(0.6, at(fire, "d", now + 0.6, done.set))
        loop.call_at(now + 0.5, at(fire, "c", now + 0.5))
        loop.call_later(0.05, at(fire, "a", now + 0.05, nested))
        loop.call_later(0.3, at(fire, "b", now + 0.3))
        loop.call_later(0.02, at(fire, "never", now)).cancel()  # cancelled on the loop
        return loop.call_later(0.2, at(fire, "cancelled-elsewhere", now))

    on_loop(loop, schedule).cancel()  # from another thread, before it is due
    assert done.wait(5)
    time.sleep(0.05)
    assert [tag for tag, *_ in fired] == ["a", "a2", "b", "c", "d"]
    assert loop.thread is not None
    for tag, due, ran_at, thread in fired:
        assert ran_at >= due - 0.005, tag  # never early (monotonic clock)
        assert thread == loop.thread.name


def test_readers_writers_forget_and_watched(loop: PipeLoop) -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    got: list[bytes] = []

    def writable() -> None:  # level-triggered: it fires until removed, so it removes itself
        got.append(b"<writable>")
        loop.remove_writer(w)

    def add_writer() -> int:
        loop.add_writer(w, writable)
        return loop.watched

    try:
        on_loop(loop, lambda: loop.add_reader(r, lambda: got.append(os.read(r, 4096))))
        assert _watched(loop) == 1
        os.write(w, b"hello")
        assert wait_until(lambda: got == [b"hello"]), got
        assert on_loop(loop, add_writer) == 2
        assert wait_until(lambda: got == [b"hello", b"<writable>"]), got
        assert _watched(loop) == 1
        on_loop(loop, lambda: loop.remove_reader(r))
        on_loop(loop, lambda: loop.remove_reader(r))  # no-op when not watched
        assert _watched(loop) == 0
        os.write(w, b"more")
        time.sleep(0.2)
        assert got == [b"hello", b"<writable>"]  # not called any more
        assert os.read(r, 4096) == b"more"  # the data is still there
        on_loop(loop, lambda: loop.add_reader(r, lambda: None))
        on_loop(loop, lambda: loop.forget(r))
        on_loop(loop, lambda: loop.forget(r))  # no-op the second time
        assert _watched(loop) == 0
    finally:
        os.close(r)
        os.close(w)
    # Forgotten before it was closed: a new descriptor (most likely the same
    # number) can be watched without a stale registration in the way.
    r2, w2 = os.pipe()
    os.set_blocking(r2, False)
    try:
        on_loop(loop, lambda: loop.add_reader(r2, lambda: got.append(os.read(r2, 100))))
        os.write(w2, b"new")
        assert wait_until(lambda: got[-1] == b"new"), got
        on_loop(loop, lambda: loop.forget(r2))
    finally:
        os.close(r2)
        os.close(w2)


def test_failing_callback_logged_loop_goes_on(loop: PipeLoop, caplog: Caplog) -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)

    def boom() -> None:
        raise RuntimeError("callback bug")

    def bad_reader() -> None:
        os.read(r, 100)
        boom()

    try:
        with caplog.at_level(logging.ERROR, logger="corral.process"):
            loop.call_soon(boom)
            on_loop(loop, lambda: loop.call_later(0.0, boom))
            on_loop(loop, lambda: loop.add_reader(r, bad_reader))
            os.write(w, b"x")
            assert wait_until(lambda: len(_failed(caplog)) >= 3), caplog.records
            ran = threading.Event()
            loop.call_soon(ran.set)
            assert ran.wait(5)
            on_loop(loop, lambda: loop.forget(r))
        assert len(_failed(caplog)) == 3  # the call, the timer, the reader: once each
        assert all("a callback failed" in rec.getMessage() for rec in _failed(caplog))
        assert loop.thread is not None and loop.thread.is_alive()
    finally:
        os.close(r)
        os.close(w)


# --------------------------------------------------------------- StdinWriter


class PipePair:
    """An ``os.pipe()`` of capacity ``PIPE_CAP``: the raw read end ``r``, a write file ``w``."""

    def __init__(self, loop: PipeLoop) -> None:
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_CAP)
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == PIPE_CAP
        os.set_blocking(r, False)
        self.r: int | None = r
        self.w = os.fdopen(w, "wb", buffering=0)
        self.loop = loop
        self.writer = StdinWriter(self.w, loop, "t")

    def close_read_end(self) -> None:
        if self.r is not None:
            os.close(self.r)
            self.r = None

    def drain(self, want: int | None, timeout: float = 10.0) -> tuple[bytes, bool]:
        """Read until ``want`` bytes (``None``: until EOF) or ``timeout``: (data, saw EOF)."""
        assert self.r is not None
        buf = bytearray()
        end = time.monotonic() + timeout
        while (want is None or len(buf) < want) and time.monotonic() < end:
            if select.select([self.r], [], [], max(0.0, end - time.monotonic()))[0]:
                chunk = os.read(self.r, 65536)
                if not chunk:
                    return bytes(buf), True
                buf += chunk
        return bytes(buf), False

    def empty(self) -> bool:  # nothing to read now (and not at EOF)
        assert self.r is not None
        return not select.select([self.r], [], [], 0)[0]


@pytest.fixture
def pp(loop: PipeLoop) -> Iterator[PipePair]:
    """A pipe and a StdinWriter (``pp.writer``) for its write end, on ``loop``."""
    pair = PipePair(loop)
    yield pair
    pair.close_read_end()
    with contextlib.suppress(OSError):
        pair.w.close()


@pytest.fixture
def writer(pp: PipePair) -> StdinWriter:
    return pp.writer


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that show any reordering or loss."""
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (n // len(block) + 1))[:n]


def test_small_write_goes_straight_into_the_pipe(pp: PipePair, writer: StdinWriter) -> None:
    assert writer.write(b"hello\n", timeout=1.0) is True
    assert pp.r is not None and os.read(pp.r, 100) == b"hello\n"  # there already
    assert pp.loop.thread is None  # the loop was not needed for it
    assert not writer.closed


def test_large_write_completes_in_order_while_read(pp: PipePair, writer: StdinWriter) -> None:
    payload = pattern(1 << 20)
    (data, _), ok = parallel(
        lambda: pp.drain(len(payload)), lambda: writer.write(payload, timeout=10.0)
    )
    assert ok is True
    assert len(data) == len(payload) and data == payload


def test_writes_from_two_threads_all_arrive_each_whole(pp: PipePair, writer: StdinWriter) -> None:
    n = 256 * 1024
    ok_a, ok_b, (data, _) = parallel(
        lambda: writer.write(b"a" * n, timeout=4.0),
        lambda: writer.write(b"b" * n, timeout=4.0),
        lambda: pp.drain(2 * n, timeout=5.0),
    )
    assert (ok_a, ok_b) == (True, True)
    assert len(data) == 2 * n, len(data)
    assert data.count(b"a") == n and data.count(b"b") == n
    # Writes are accepted whole, one after the other: neither is split by the other.
    assert data in (b"a" * n + b"b" * n, b"b" * n + b"a" * n)


def test_writes_while_data_is_queued_keep_their_order(pp: PipePair, writer: StdinWriter) -> None:
    """A write while an earlier one still waits in the queue is queued after it."""
    first, second, third = pattern(20_000, 1), b"SECOND" * 1000, b"third\n"
    chunks = (first, second, third)
    assert on_loop(pp.loop, lambda: [writer.write(c, timeout=None) for c in chunks]) == [True] * 3
    data, _ = pp.drain(len(first + second + third), timeout=2.0)
    assert len(data) == len(first + second + third) and data == first + second + third
    # Off the loop too: a write behind queued bytes waits for its own bytes.
    assert on_loop(pp.loop, lambda: writer.write(first, timeout=None))
    (data, _), ok = parallel(
        lambda: pp.drain(len(first) + len(third), timeout=6.0),
        lambda: writer.write(third, timeout=5.0),
    )
    assert ok is True and data == first + third


def test_write_nobody_reads_times_out_and_closes(pp: PipePair, writer: StdinWriter) -> None:
    payload = pattern(1 << 20, 3)
    started = time.monotonic()
    assert writer.write(payload, timeout=0.2) is False
    assert 0.15 <= time.monotonic() - started < 3.0
    assert wait_until(lambda: writer.closed, 3.0)  # the child is unusable: stdin closed
    data, eof = pp.drain(None, timeout=10.0)  # what was in the pipe, then EOF: no rest
    assert eof and 0 < len(data) < len(payload) and payload.startswith(data)


def test_write_on_the_loop_never_waits_even_when_full(pp: PipePair, writer: StdinWriter) -> None:
    filled = 0  # fill the pipe behind the writer's back
    with contextlib.suppress(BlockingIOError):
        while True:
            filled += os.write(pp.w.fileno(), b"F" * PIPE_CAP)
    assert filled >= PIPE_CAP
    payload = pattern(100_000, 5)

    def write_on_loop() -> tuple[bool, float]:
        started = time.monotonic()
        ok = writer.write(payload, timeout=None)  # None would wait forever off the loop
        return ok, time.monotonic() - started

    ok, took = on_loop(pp.loop, write_on_loop)
    assert ok is True and took < 1.0
    data, _ = pp.drain(filled + len(payload), timeout=10.0)
    assert data == b"F" * filled + payload


def test_write_over_the_cap_fails_and_changes_nothing(loop: PipeLoop, pp: PipePair) -> None:
    writer = StdinWriter(pp.w, loop, "t", cap=10_000)
    assert writer.write(b"x" * 10_001, timeout=1.0) is False
    assert pp.empty()  # nothing written, not even a part
    first = pattern(10_000, 7)  # exactly the cap: accepted
    assert on_loop(loop, lambda: writer.write(first, timeout=None)) is True
    over = b"y" * (PIPE_CAP + 1)  # queued (10_000 - PIPE_CAP) + this: one byte too many
    assert writer.write(over, timeout=1.0) is False
    assert on_loop(loop, lambda: writer.write(over, timeout=None)) is False
    assert not writer.closed
    assert pp.drain(len(first), timeout=5.0)[0] == first
    time.sleep(0.1)
    assert pp.empty()  # the refused bytes never follow


@pytest.mark.parametrize("size", [5, 100_000])
def test_close_writes_what_is_queued_then_eof(pp: PipePair, writer: StdinWriter, size: int) -> None:
    payload = pattern(size, 9)
    assert on_loop(pp.loop, lambda: writer.write(payload, timeout=None)) is True
    writer.close()
    assert writer.write(b"late", timeout=1.0) is False  # closing: no new bytes
    writer.close()  # idempotent
    assert pp.drain(None, timeout=10.0) == (payload, True)
    assert wait_until(lambda: writer.closed)
    assert writer.write(b"later", timeout=1.0) is False


def test_abort_drops_the_queue_and_closes(pp: PipePair, writer: StdinWriter) -> None:
    payload = pattern(100_000, 11)
    assert on_loop(pp.loop, lambda: writer.write(payload, timeout=None)) is True
    writer.abort()
    assert wait_until(lambda: writer.closed)
    writer.abort()  # idempotent
    data, eof = pp.drain(None, timeout=5.0)
    assert eof
    assert 0 < len(data) < len(payload)  # what was in the pipe, not the queue
    assert data == payload[: len(data)]
    assert writer.write(b"x", timeout=1.0) is False


def test_broken_pipe_wakes_a_waiting_writer(pp: PipePair, writer: StdinWriter) -> None:
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        waiting = pool.submit(writer.write, pattern(200_000), 20.0)  # must never raise
        assert pp.r is not None and select.select([pp.r], [], [], 5.0)[0]  # under way
        time.sleep(0.2)  # and now waiting for room
        pp.close_read_end()
        assert waiting.result(10) is False
        assert time.monotonic() - started < 10.0
    assert wait_until(lambda: writer.closed)
    assert writer.write(b"y", timeout=1.0) is False


def test_write_into_a_broken_pipe_fails(pp: PipePair, writer: StdinWriter) -> None:
    pp.close_read_end()
    assert writer.write(b"x" * 10, timeout=1.0) is False  # EPIPE, not raised
    assert writer.closed


def test_write_with_a_closed_loop_fails_and_closes(pp: PipePair) -> None:
    closed_loop = PipeLoop(name=_name("pipes"))
    closed_loop.close()
    writer = StdinWriter(pp.w, closed_loop, "t")
    payload = pattern(50_000, 13)
    assert writer.write(payload, timeout=1.0) is False  # nobody would write the rest
    assert writer.closed
    data, eof = pp.drain(None, timeout=5.0)
    assert eof and data == payload[: len(data)]


# -------------------------------------------------------------------- Reaper


@pytest.mark.parametrize("max_workers", [4, 2])
def test_reaper_runs_each_job_once_on_few_named_threads(max_workers: int) -> None:
    reaper = Reaper(max_workers=max_workers)  # the default name: corral-reaper
    lock = threading.Lock()
    runs = [0] * 200
    names: set[str] = set()
    done = threading.Event()

    def job(i: int, scan: ProcScan) -> None:
        assert isinstance(scan, ProcScan)
        time.sleep(0.001)
        with lock:
            names.add(threading.current_thread().name)
            runs[i] += 1
            if all(runs):
                done.set()

    for i in range(200):
        reaper.submit(functools.partial(job, i))
    assert done.wait(20)
    time.sleep(0.05)
    assert runs == [1] * 200
    assert 1 <= len(names) <= max_workers and reaper.workers <= max_workers
    for name in names:
        m = re.fullmatch(r"corral-reaper-(\d+)", name)
        assert m is not None and 1 <= int(m.group(1)) <= max_workers, name


def test_reaper_batches_share_a_scan_and_outlive_failing_jobs(caplog: Caplog) -> None:
    name = _name("reaper")
    reaper = Reaper(name=name, max_workers=1)
    release, started, done = threading.Event(), threading.Event(), threading.Event()
    scans: list[ProcScan] = []  # kept alive, so identities are not reused
    order: list[int] = []
    threads: set[str] = set()
    total = 3 * BATCH_MAX + 8

    def first(scan: ProcScan) -> None:
        scans.append(scan)
        started.set()
        release.wait(10)
        raise RuntimeError("exit job bug")

    def later(i: int, scan: ProcScan) -> None:
        scans.append(scan)
        order.append(i)
        threads.add(threading.current_thread().name)
        if i == 5:
            raise RuntimeError("exit job bug")  # the rest of its batch runs all the same
        if len(order) == total:
            done.set()

    with caplog.at_level(logging.ERROR, logger="corral.process"):
        reaper.submit(first)
        assert started.wait(5)
        for i in range(total):  # all queued while the only worker is busy
            reaper.submit(functools.partial(later, i))
        release.set()
        assert done.wait(10)
    assert order == list(range(total))
    assert threads == {f"{name}-1"} and reaper.workers == 1
    sizes = [len(list(run)) for _, run in itertools.groupby(scans, key=id)]
    assert sizes == [1, BATCH_MAX, BATCH_MAX, BATCH_MAX, 8]
    assert len({id(scan) for scan in scans}) == len(sizes)  # a new scan per batch
    assert len(_failed(caplog)) == 2  # both failures logged
    assert all("an exit job failed" in rec.getMessage() for rec in _failed(caplog))


def test_proc_scan_is_one_read_of_proc() -> None:
    sid = os.getsid(0)
    scan = ProcScan()
    members = scan.session_members(sid)
    pids = [st.pid for st in members]
    assert os.getpid() in pids and pids == sorted(pids)
    assert all(st.session == sid and not st.dead for st in members)
    assert scan.session_members(-12345) == []
    child = subprocess.Popen([SLEEP, "30"])  # same session, started after the scan
    try:
        assert wait_until(lambda: pid_alive(child.pid))
        assert child.pid not in [st.pid for st in scan.session_members(sid)]  # the same read
        assert child.pid in [st.pid for st in ProcScan().session_members(sid)]
    finally:
        child.kill()
        child.wait(5)


# --------------------------------------------------- ProviderProcess on the loop


def test_twenty_providers_cost_no_thread_each(loop: PipeLoop, lh: Harness) -> None:
    reaper_name = _name("reaper")
    reaper = Reaper(name=reaper_name)
    base = threading.active_count()
    code = "import time\ntime.sleep(30)\n"
    started = [
        lh.spawn(code, stdin_pipe=True, loop=loop, reaper=reaper, name=f"p{i}") for i in range(20)
    ]
    assert all(p.pid is not None and p.alive for p, _ in started)
    grown = threading.active_count() - base
    assert grown <= 3, (grown, sorted(t.name for t in threading.enumerate()))
    assert _watched(loop) == 20 * 3  # stdout, stderr and a pidfd each
    for p, _ in started:
        p.terminate(((signal.SIGTERM, 2.0),))
    infos = [p.wait(10) for p, _ in started]
    for (p, rec), info in zip(started, infos, strict=True):
        assert info is not None and rec.exits == [info]
        assert info.signal == signal.SIGTERM and info.stopped_by_us
        assert p.pid is not None
        st = proc_stat(p.pid)
        assert st is None or st.ppid != os.getpid(), st  # reaped, not our zombie
        with pytest.raises(ChildProcessError):
            os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    reapers = [t for t in threading.enumerate() if t.name.startswith(reaper_name + "-")]
    assert 1 <= len(reapers) <= 4 and reaper.workers <= 4
    assert threading.active_count() - base <= 3 + 4
    assert wait_until(lambda: _watched(loop) == 0)


def test_pause_reading_holds_lines_and_exit_until_resumed(loop: PipeLoop, lh: Harness) -> None:
    code = "import sys\nsys.stdin.readline()\nfor i in range(200):\n    print('line %d' % i)\n"
    reaper = Reaper(name=_name("reaper"))
    rec = Rec()
    # A short drain timeout: a paused stdout must not be given up as idle.
    p, _ = lh.spawn(code, rec=rec, stdin_pipe=True, loop=loop, reaper=reaper, drain_timeout=0.1)
    p.pause_reading()  # queued behind the registration, before the child can print
    assert p.write(b"go\n", timeout=5.0)
    assert wait_until(lambda: not p.alive, 10.0)  # printed everything and exited
    time.sleep(0.5)
    assert rec.lines == [] and rec.exits == []
    p.resume_reading()
    info = p.wait(10)
    assert info is not None and info.returncode == 0
    assert rec.lines == [b"line %d" % i for i in range(200)]
    assert rec.exits == [info] and rec.lines_at_exit == 200
