"""The stop ladder's timing, deterministically: which signal goes out when.

:class:`StopLadder` is driven on a fake clock, so a ladder that skipped a
grace (or ``kill_after``) sends its next signal too early and fails here every
time.  The last test runs the real ladder of a :class:`ProviderProcess` with
a recording ``killpg``: the gaps between the recorded signals are lower
bounds the ladder guarantees, so they hold on any machine load.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.supervisor.process import StopLadder
from tests.support.proc import READY_IGNORING_TERM, Harness

pytestmark = pytest.mark.timeout(30)

TERM, INT, CONT, KILL = signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGKILL
T0 = 1000.0


def run(ladder: StopLadder, start: float, *, send_delay: float = 0.0) -> list[tuple[float, int]]:
    """Drive ``ladder`` on a fake clock that jumps to each wake-up; (time, signal) sent.

    ``send_delay`` is how long each signal takes to go out (its grace counts
    from then).
    """
    now = start
    sent: list[tuple[float, int]] = []
    while not ladder.finished:
        sig = ladder.due(now)
        if sig is None:
            wake = ladder.wake_at()
            assert wake > now, "the ladder would spin"
            now = wake
            continue
        sent.append((now, sig))
        now += send_delay
        ladder.sent(now)
    assert ladder.wake_at() == math.inf and ladder.due(now + 1e9) is None
    return sent


def test_each_grace_and_kill_after_run_out_before_the_next_signal() -> None:
    ladder = StopLadder(((TERM, 0.3), (INT, 0.2)), 0.1, T0)
    assert ladder.kill_deadline == pytest.approx(T0 + 0.6)
    assert run(ladder, T0) == [(T0, TERM), (T0 + 0.3, INT), (pytest.approx(T0 + 0.6), KILL)]


def test_nothing_is_due_before_a_grace_ran_out() -> None:
    ladder = StopLadder(((TERM, 0.3), (INT, 0.2)), 0.1, T0)
    assert ladder.due(T0) == TERM
    ladder.sent(T0)
    assert ladder.wake_at() == pytest.approx(T0 + 0.3)
    for t in (T0, T0 + 0.1, T0 + 0.29):
        assert ladder.due(t) is None  # still SIGTERM's grace
    assert ladder.due(T0 + 0.3) == INT
    ladder.sent(T0 + 0.3)
    for t in (T0 + 0.3, T0 + 0.45, T0 + 0.55, T0 + 0.59):
        assert ladder.due(t) is None  # SIGINT's grace, then kill_after
    assert ladder.due(T0 + 0.6) == KILL and ladder.finished


def test_a_grace_counts_from_when_its_signal_went_out() -> None:
    ladder = StopLadder(((TERM, 0.3), (INT, 0.3)), 0.5, T0)
    sent = run(ladder, T0, send_delay=0.05)
    assert sent == [
        (T0, TERM),
        (pytest.approx(T0 + 0.35), INT),  # 0.05 to send SIGTERM, then its 0.3
        (pytest.approx(T0 + 1.1), KILL),  # the deadline: every grace plus kill_after
    ]


def test_the_deadline_cuts_steps_that_slipped() -> None:
    # Signals that take long to go out push the steps past the kill deadline:
    # what is left of the ladder is skipped, SIGKILL comes at the deadline.
    ladder = StopLadder(((TERM, 0.3), (INT, 0.3), (signal.SIGHUP, 0.3)), 0.0, T0)
    sent = run(ladder, T0, send_delay=0.2)
    assert [sig for _, sig in sent] == [TERM, INT, KILL]
    assert sent[-1][0] == pytest.approx(T0 + 0.9)


def test_hurry_only_moves_the_deadline_earlier() -> None:
    ladder = StopLadder(((TERM, 30.0),), 0.0, T0)
    assert ladder.due(T0) == TERM
    ladder.sent(T0)
    assert not ladder.hurry(T0 + 60.0)
    assert ladder.kill_deadline == T0 + 30.0
    assert ladder.hurry(T0 + 0.1)
    assert ladder.wake_at() == pytest.approx(T0 + 0.1)
    assert ladder.due(T0 + 0.05) is None
    assert ladder.due(T0 + 0.1) == KILL


def test_empty_or_graceless_ladders_kill_at_once() -> None:
    assert run(StopLadder((), 0.0, T0), T0) == [(T0, KILL)]
    assert run(StopLadder(((TERM, 0.0), (INT, -1.0)), 0.0, T0), T0) == [(T0, KILL)]
    # a grace of 0 in the middle: the next step follows at once
    assert run(StopLadder(((TERM, 0.0), (INT, 0.5)), 0.0, T0), T0) == [
        (T0, TERM),
        (T0, INT),
        (T0 + 0.5, KILL),
    ]


def test_deadline_for_matches_a_fresh_ladder() -> None:
    steps = ((TERM, 0.4), (INT, -3.0), (signal.SIGHUP, 0.25))
    assert StopLadder.deadline_for(steps, 0.5, T0) == StopLadder(steps, 0.5, T0).kill_deadline
    assert StopLadder.deadline_for(steps, -1.0, T0) == pytest.approx(T0 + 0.65)


# ------------------------------------------------------------- a real process


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


def test_provider_process_ladder_waits_out_each_grace(h: Harness) -> None:
    sent: list[tuple[int, float]] = []
    lock = threading.Lock()

    def killpg(pgid: int, sig: int) -> None:
        with lock:
            sent.append((sig, time.monotonic()))
        os.killpg(pgid, sig)

    code = READY_IGNORING_TERM.replace(
        "print(", "signal.signal(signal.SIGINT, signal.SIG_IGN)\nprint("
    )
    p, rec = h.spawn(code, killpg=killpg)
    rec.wait_lines(1)
    started = time.monotonic()
    p.terminate(((TERM, 0.3), (INT, 0.2)), kill_after=0.1)
    info = p.wait(10)
    assert info is not None and info.signal == KILL and info.stopped_by_us
    with lock:
        sigs = [sig for sig, _ in sent]
        at = {sig: t for sig, t in sent if sig != CONT}
    # each step is followed by SIGCONT (a stopped group can act on it)
    assert sigs == [TERM, CONT, INT, CONT, KILL]
    # Lower bounds only: the ladder cannot send earlier than this, however
    # slow the machine, and a ladder that skips a wait breaks them every time.
    assert at[INT] - at[TERM] >= 0.3  # SIGTERM's grace, counted after it went out
    assert at[KILL] - started >= 0.3 + 0.2 + 0.1  # every grace plus kill_after
    assert at[KILL] - at[INT] > 0.0
