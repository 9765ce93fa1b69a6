"""A provider's stdout: LineSplitter (bounded lines, over-long lines dropped as a
marker), and how ProviderProcess hands those on and reacts to stdout's end."""

from __future__ import annotations

import signal
import time
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.actors.ports import ExitReport
from corral.supervisor.process import LineSplitter
from corral.supervisor.process.child import CLOSED_OUTPUT_REASON, STDOUT_EOF_GRACE_S
from corral.supervisor.process.lines import DroppedLine, line_runs
from tests.support.proc import (
    Harness,
    harness_fixture,  # noqa: F401  (the ``h`` fixture)
    pid_alive,
)

pytestmark = pytest.mark.timeout(30)


# ----------------------------------------------------------------- splitter


def expected_lines(raw: bytes, cap: int) -> list[bytes | DroppedLine]:
    parts = raw.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    out: list[bytes | DroppedLine] = []
    for part in parts:
        if part.endswith(b"\r"):
            part = part[:-1]
        out.append(part if len(part) <= cap else DroppedLine(len(part), cap))
    return out


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=12),
    crs=st.lists(st.booleans(), min_size=12, max_size=12),
    trailing_nl=st.booleans(),
    cap=st.integers(min_value=1, max_value=30),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_line_splitter_matches_model(
    lines: list[bytes], crs: list[bool], trailing_nl: bool, cap: int, cuts: list[int]
) -> None:
    raw = b"\n".join(line + (b"\r" if cr else b"") for line, cr in zip(lines, crs, strict=False))
    if lines and trailing_nl:
        raw += b"\n"
    splitter = LineSplitter(cap)
    got: list[bytes | DroppedLine] = []
    prev = 0
    for cut in [*sorted({min(c, len(raw)) for c in cuts}), len(raw)]:
        got += splitter.feed(raw[prev:cut])
        prev = cut
    last = splitter.finish()
    if last is not None:
        got.append(last)
    want = expected_lines(raw, cap)
    assert got == want
    dropped = [x for x in want if isinstance(x, DroppedLine)]
    assert splitter.dropped_lines == len(dropped)
    assert splitter.dropped_bytes == sum(x.size for x in dropped)


def test_over_long_line_is_dropped_whole_and_counted() -> None:
    s = LineSplitter(4)
    assert s.feed(b"abcdefgh") == []  # nothing of it, not even its start
    assert s.feed(b"ijk\r") == []
    assert s.feed(b"\nxy\r\n") == [DroppedLine(11, 4), b"xy"]
    assert s.feed(b"abcd\r\nabcde\n") == [b"abcd", DroppedLine(5, 4)]
    assert s.dropped_lines == 2 and s.dropped_bytes == 16
    assert s.finish() is None


def test_unterminated_over_long_line_is_reported_at_the_end() -> None:
    s = LineSplitter(3)
    assert s.feed(b"ok\nlonger") == [b"ok"]
    assert s.finish() == DroppedLine(6, 3)
    assert s.finish() is None


def test_line_runs_groups_lines_between_drops() -> None:
    drop = DroppedLine(9, 4)
    assert line_runs([]) == []
    assert line_runs([b"a", b"b", drop, drop, b"c"]) == [[b"a", b"b"], drop, drop, [b"c"]]


def test_skipping_a_huge_line_keeps_memory_bounded() -> None:
    limit = 64 * 1024
    chunk = b"x" * (64 * 1024)
    total = 50 * 1024 * 1024
    s = LineSplitter(limit)
    tracemalloc.start()
    try:
        for _ in range(total // len(chunk)):
            assert s.feed(chunk) == []
        got = s.feed(b"\nnext\n")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == [DroppedLine(total, limit), b"next"]
    assert peak < 4 * limit  # the line is counted, never accumulated


# ------------------------------------------------------- through ProviderProcess


def test_process_hands_over_a_dropped_line_in_order(h: Harness) -> None:
    events: list[object] = []
    code = (
        "import sys\n"
        "w = sys.stdout.buffer.write\n"
        "w(b'first\\n' + b'a' * 3_000_000 + b'\\nnext\\n')\n"
        "w(b'b' * 500_000)\n"
    )
    p, _rec = h.spawn(
        code,
        on_line=None,
        on_lines=lambda lines: events.extend(lines),
        on_dropped_line=events.append,
        max_line_bytes=1000,
    )
    info = p.wait(10)
    assert info is not None and info.returncode == 0 and info.reason is None
    assert events == [b"first", DroppedLine(3_000_000, 1000), b"next", DroppedLine(500_000, 1000)]
    assert p.dropped_lines == 2


def test_process_that_closes_stdout_but_runs_on_is_stopped(h: Harness) -> None:
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"  # the ladder's SIGKILL ends it
        "print('ready', flush=True)\n"
        "os.close(1)\n"
        "time.sleep(60)\n"
    )
    p, rec = h.spawn(code)
    rec.wait_lines(1)
    began = time.monotonic()
    info = p.wait(10)
    assert info is not None, "a provider without stdout was left running"
    assert info.reason == CLOSED_OUTPUT_REASON
    assert info.stopped_by_us and info.signal == signal.SIGKILL
    # the grace, then SIGTERM's 3 s before the SIGKILL
    assert time.monotonic() - began < STDOUT_EOF_GRACE_S + 3.0 + 2.0
    assert p.pid is not None and not pid_alive(p.pid)
    assert rec.exits == [info]


def test_process_that_closes_stdout_and_exits_soon_is_not_stopped(h: Harness) -> None:
    code = "import os, time\nos.close(1)\ntime.sleep(0.2)\nraise SystemExit(4)\n"
    p, _rec = h.spawn(code)
    info = p.wait(10)
    assert info is not None
    assert info.returncode == 4 and info.reason is None and not info.stopped_by_us


def test_a_stop_already_under_way_keeps_its_own_report(h: Harness) -> None:
    code = "import os, time\nprint('ready', flush=True)\nos.close(1)\ntime.sleep(60)\n"
    p, rec = h.spawn(code)
    rec.wait_lines(1)
    p.terminate(((signal.SIGTERM, 2.0),))
    info = p.wait(10)
    assert isinstance(info, ExitReport)
    assert info.signal == signal.SIGTERM and info.stopped_by_us and info.reason is None
