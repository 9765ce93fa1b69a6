"""Tests for killing a provider's tree: its group, descendants outside it, subreaper orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from corral.supervisor.process import DescendantTracker, ProviderProcess, pin_process
from tests.support.proc import (
    PY,
    SLEEP,
    Harness,
    Rec,
    harness_fixture,  # noqa: F401  (the ``h`` fixture)
    is_subreaper,
    kill_if_same,
    pid_alive,
    pids_in_group,
    proc_stat,
    process_group_of,
    read_line,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------ grandchildren

SPAWN_GRANDCHILD = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([{sleep!r}, '60'], {redirect})\n"
    "print(g.pid, flush=True)\n"
    "{tail}\n"
)


def grandchild_code(*, hold_stdout: bool, tail: str, own_session: bool = False) -> str:
    redirect = "" if hold_stdout else "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL"
    if own_session:
        redirect += ", start_new_session=True"
    return SPAWN_GRANDCHILD.format(sleep=SLEEP, redirect=redirect.lstrip(", "), tail=tail)


def test_grandchild_killed_by_terminate(h: Harness) -> None:
    code = grandchild_code(hold_stdout=False, tail="time.sleep(60)")
    p, rec = h.spawn(code)
    assert p.pid is not None
    gpid = int(rec.wait_lines(1)[0])
    h.track(gpid, p.pid)
    assert process_group_of(gpid) == p.pid
    assert pids_in_group(p.pid) == sorted([p.pid, gpid])
    p.terminate(((signal.SIGTERM, 2.0),))
    info = p.wait(5)
    assert info is not None and info.stopped_by_us
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert pids_in_group(p.pid) == []


def test_grandchild_killed_when_leader_exits(h: Harness) -> None:
    code = grandchild_code(hold_stdout=False, tail="sys.exit(0)")
    p, rec = h.spawn(code)
    assert p.pid is not None
    info = p.wait(5)
    assert info is not None
    gpid = int(rec.lines[0])
    h.track(gpid, p.pid)
    assert info.returncode == 0 and not info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_grandchild_holding_stdout_does_not_block_exit(h: Harness) -> None:
    code = grandchild_code(hold_stdout=True, tail="sys.exit(4)")
    p, rec = h.spawn(code, drain_timeout=30.0)  # EOF must come from the group kill
    assert p.pid is not None
    start = time.monotonic()
    info = p.wait(5)
    assert info is not None, "on_exit did not fire"
    assert time.monotonic() - start < 3.0
    gpid = int(rec.lines[0])
    h.track(gpid, p.pid)
    assert info.returncode == 4 and info.leftover_killed >= 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert rec.exits == [info]


HOLDER = (
    "import socket, sys, time\n"
    "srv = socket.socket(socket.AF_UNIX)\n"
    "srv.bind('\\0' + sys.argv[1])  # an abstract address: no file\n"
    "srv.listen(1)\n"
    "print('listening', flush=True)\n"
    "conn, _ = srv.accept()\n"
    "_, fds, _, _ = socket.recv_fds(conn, 16, 4)\n"
    "conn.sendall(b'k')\n"
    "time.sleep(60)\n"
)


def test_stdout_held_outside_the_tree_ends_by_drain_timeout(h: Harness) -> None:
    # A process that is no descendant (it got stdout over a socket) keeps the
    # pipe open: nothing to kill there, only the drain timeout ends the read.
    name = f"corral-test-{uuid.uuid4().hex}"
    address = "\0" + name
    holder = subprocess.Popen(
        [PY, "-c", HOLDER, name], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert read_line(holder.stdout) == b"listening\n"
        code = (
            "import socket\n"
            f"s = socket.socket(socket.AF_UNIX); s.connect({address!r})\n"
            "socket.send_fds(s, [b'x'], [1]); s.recv(1)\n"
            "print('handed over', flush=True)\n"
        )
        p, rec = h.spawn(code, drain_timeout=0.3)
        start = time.monotonic()
        info = p.wait(10)
        assert info is not None
        assert time.monotonic() - start < 5.0
        assert info.returncode == 0 and info.leftover_killed == 0
        assert rec.lines == [b"handed over"]
        assert holder.poll() is None  # not ours to kill
    finally:
        holder.kill()
        holder.wait(5)


# ------------------------------------------------- descendants outside the group


def escaped_grandchild(h: Harness, tail: str, **kw: Any) -> tuple[ProviderProcess, Rec, int]:
    """A provider whose child runs ``sleep 60`` in a session of its own."""
    code = grandchild_code(hold_stdout=False, tail=tail, own_session=True)
    p, rec = h.spawn(code, **kw)
    gpid = int(rec.wait_lines(1)[0])
    h.track_ident(gpid)
    assert p.pid is not None
    assert process_group_of(gpid) == gpid  # outside the provider's group and session
    return p, rec, gpid


def test_escaped_grandchild_killed_after_the_leader_is_sigkilled(h: Harness) -> None:
    p, _, gpid = escaped_grandchild(h, "time.sleep(60)")
    assert p.pid is not None
    assert wait_until(lambda: gpid in p.descendants, 3.0)  # the periodic snapshot
    os.kill(p.pid, signal.SIGKILL)  # a crash: no ladder ran
    info = p.wait(5)
    assert info is not None
    assert info.signal == signal.SIGKILL and not info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)
    assert p.descendants == []


def test_escaped_grandchild_killed_when_the_leader_exits(h: Harness) -> None:
    p, _, gpid = escaped_grandchild(h, "sys.stdin.readline()\nsys.exit(5)", stdin_pipe=True)
    assert wait_until(lambda: gpid in p.descendants, 3.0)
    p.close_stdin()
    info = p.wait(5)
    assert info is not None
    assert info.returncode == 5 and info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_ladder_walks_the_tree_before_its_sigkill(h: Harness) -> None:
    # No wait for the periodic snapshot: the ladder refreshes it before signalling.
    p, _, gpid = escaped_grandchild(h, "time.sleep(60)")
    p.terminate(())
    info = p.wait(5)
    assert info is not None
    assert info.signal == signal.SIGKILL and info.stopped_by_us
    assert info.leftover_killed == 1
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_pin_refuses_a_process_with_another_start_time() -> None:
    # What guards a recorded PID against reuse: (pid, start time) must match.
    proc = subprocess.Popen([SLEEP, "60"])
    try:
        st = proc_stat(proc.pid)
        assert st is not None
        assert pin_process(proc.pid, st.start + 1) is None
        pin = pin_process(proc.pid, st.start)
        assert pin is not None
        try:
            assert pin.send(signal.SIGKILL)
        finally:
            pin.close()
        assert proc.wait(5) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


# The subreaper scenarios run in a helper process that makes *itself* the
# subreaper.  The pytest process must never become one (the attribute cannot
# be scoped to a test, and tests run one after another in it): the orphans of
# other tests (the providers of a daemon a test SIGKILLs, escaped
# grandchildren) would be reparented to it and linger as zombies nobody
# reaps, and its own descendant tracker would take them for orphans of
# whatever ProviderProcess runs here and kill them with it.

SCENARIO_LEADER = """\
import json, subprocess, sys, time
P, NULL = subprocess.PIPE, subprocess.DEVNULL

def bg(argv, **kw):
    proc = subprocess.Popen(argv, stdout=P, **kw)
    return proc, int(proc.stdout.readline())

def sh(script, **kw):
    return bg(["/bin/sh", "-c", script], **kw)

def say(**kw):
    print(json.dumps(kw), flush=True)

tool, tool_bg = sh("sleep 60 & echo $!; wait", start_new_session=True, stdin=NULL)
mid, mid_bg = sh("sleep 60 & echo $!; read x", start_new_session=True, stdin=P)
short, short_bg = sh("sleep 1 & echo $!", start_new_session=True, stdin=NULL)
short.wait()
lone, lone_bg = bg([sys.executable, "-c", sys.argv[1]], stdin=P)
say(tool=tool.pid, tool_bg=tool_bg, mid=mid.pid, mid_bg=mid_bg, short_bg=short_bg,
    lone=lone.pid, lone_bg=lone_bg)
sys.stdin.readline()
for proc in (mid, lone):
    proc.stdin.close()
    proc.wait()
say(released=True)
sys.stdin.readline()
late, late_bg = sh("sleep 60 & echo $!; wait", start_new_session=True, stdin=NULL)
say(late=late.pid, late_bg=late_bg)
time.sleep(60)
"""

# A child that leads a session of its own and exits by itself after 3 s.
SCENARIO_LONE = """\
import os, sys, time
pid = os.fork()
if pid == 0:
    os.setsid()
    time.sleep(3)
    os._exit(0)
print(pid, flush=True)
sys.stdin.readline()
"""

# Runs before each scenario body, in a helper process that made itself a subreaper.
SCENARIO_PRELUDE = """\
import json, logging, os, signal, sys, time
from tests.support import proc as proctools
from corral.supervisor.process import ProviderProcess

logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
me = os.getpid()
report = {"was_subreaper": proctools.is_subreaper()}
report["subreaper"] = proctools.become_subreaper() and proctools.is_subreaper()


def emit(**kw):
    print(json.dumps(kw), flush=True)


def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def idents(pids):
    # (pid, start time) of each, printed at once: the test kills them by identity
    emit(pids=[[pid, st.start] for pid in pids if (st := proctools.proc_stat(pid))])


def gone(pid):
    return proctools.proc_stat(pid) is None  # not even a zombie


def provider(code, lines, *args, **kw):
    p = ProviderProcess(
        [sys.executable, "-c", code, *args],
        env=dict(os.environ),
        cwd=os.getcwd(),
        on_line=lines.append,
        on_exit=lambda info: None,
        **kw,
    )
    p.start()
    idents([p.pid])
    return p


"""

SCENARIO_ONE_PROVIDER = """\
lines = []
p = provider(sys.argv[1], lines, sys.argv[2], stdin_pipe=True)
try:
    assert wait_until(lambda: len(lines) >= 1), "no pids from the leader"
    first = json.loads(lines[0])
    idents(first.values())
    report["short_reparented"] = proctools.parent_of(first["short_bg"]) == me
    want = {first[k] for k in ("tool", "tool_bg", "mid", "mid_bg", "lone_bg")}
    report["tracked"] = wait_until(lambda: want <= set(p.descendants), 5.0)
    lone = first["lone_bg"]
    report["lone_own_session"] = wait_until(
        lambda: getattr(proctools.proc_stat(lone), "session", 0) == lone, 5.0
    )
    p.write(b"release\\n")  # the intermediates exit: their children come to us
    assert wait_until(lambda: len(lines) >= 2), "not released"
    report["mid_bg_reparented"] = proctools.parent_of(first["mid_bg"]) == me
    report["lone_reparented"] = proctools.parent_of(lone) == me
    # Orphans that exit on their own are reaped by PID, not left as zombies.
    report["short_reaped"] = wait_until(lambda: gone(first["short_bg"]), 5.0)
    report["lone_reaped"] = wait_until(lambda: gone(lone), 6.0)
    report["mid_bg_still_tracked"] = first["mid_bg"] in p.descendants
    p.write(b"late\\n")  # a new tool, then at once a crash
    assert wait_until(lambda: len(lines) >= 3), "no late tool"
    late = json.loads(lines[2])
    idents(late.values())
    os.kill(p.pid, signal.SIGKILL)
    info = p.wait(10)
    report["signal"] = info.signal if info else None
    report["leftover_killed"] = info.leftover_killed if info else None
    doomed = [first["tool"], first["tool_bg"], first["mid_bg"], *late.values()]
    report["left"] = {pid: proctools.read_stat(pid) for pid in doomed if not gone(pid)}
    report["children"] = proctools.children_of(me)
finally:
    p.terminate(())
    p.wait(5)
    emit(report=report)
"""

SCENARIO_TWO_PROVIDERS = """\
IDLE = "import time; print('up', flush=True); time.sleep(60)"
ORPHANING = (
    "import subprocess, time\\n"
    "sh = subprocess.Popen(['/bin/sh', '-c', 'sleep 60 & echo $!'],\\n"
    "                      start_new_session=True, stdout=subprocess.PIPE)\\n"
    "print(int(sh.stdout.readline()), flush=True)\\n"
    "sh.wait()\\n"
    "time.sleep(60)\\n"
)
a_lines, b_lines = [], []
a = provider(IDLE, a_lines)
b = None
try:
    assert wait_until(lambda: a_lines), "a did not start"
    b = provider(ORPHANING, b_lines)
    assert wait_until(lambda: b_lines), "b did not start"
    orphan = int(b_lines[0])
    idents([orphan])
    # Its shell exited at once: the orphan comes to us, maybe before any
    # snapshot saw it; a and b both started before it, so either could own it.
    report["reparented"] = wait_until(lambda: proctools.parent_of(orphan) == me, 5.0)
    time.sleep(1.2)  # a few tracker refreshes
    os.kill(a.pid, signal.SIGKILL)
    info = a.wait(10)
    report["a_killed"] = info.leftover_killed if info else None
    time.sleep(1.2)
    report["alive_while_b_runs"] = proctools.pid_alive(orphan)
    os.kill(b.pid, signal.SIGKILL)
    info = b.wait(10)
    report["b_killed"] = info.leftover_killed if info else None
    report["gone_with_b"] = wait_until(lambda: gone(orphan), 3.0)
    report["children"] = proctools.children_of(me)
finally:
    for p in (a, b):
        if p is not None:
            p.terminate(())
            p.wait(5)
    emit(report=report)
"""


def run_scenario(body: str, *args: str) -> tuple[dict[str, Any], str]:
    """Run ``body`` in a helper process that is a subreaper; return its report and stderr.

    Every PID the helper announced is killed afterwards if it is still the
    same process, and must be gone by then.
    """
    assert not is_subreaper()  # the test process itself never is one (see above)
    helper = subprocess.Popen(
        [PY, "-c", SCENARIO_PRELUDE + body, *args],
        cwd=ROOT,  # tests.support is imported from the checkout
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started: list[tuple[int, int]] = []
    try:
        try:
            out, err = helper.communicate(timeout=45)
        except subprocess.TimeoutExpired:
            helper.kill()
            out, err = helper.communicate(timeout=5)
        frames = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        started += [(pid, start) for f in frames for pid, start in f.get("pids", [])]
        reports = [f["report"] for f in frames if "report" in f]
        assert helper.returncode == 0 and reports, err
    finally:
        if helper.poll() is None:
            helper.kill()
            helper.wait(5)
        for pid, start in started:
            kill_if_same(pid, start)
    survivors = [pid for pid, start in started if (st := proc_stat(pid)) and st.start == start]
    assert wait_until(lambda: all(not pid_alive(pid) for pid in survivors), 3.0)
    report: dict[str, Any] = reports[0]
    assert report["subreaper"] and not report["was_subreaper"], report
    return report, err


@pytest.mark.timeout(60)
def test_subreaper_kills_and_reaps_reparented_descendants() -> None:
    report, err = run_scenario(SCENARIO_ONE_PROVIDER, SCENARIO_LEADER, SCENARIO_LONE)
    assert report["tracked"] and report["lone_own_session"], report
    assert report["short_reparented"] and report["mid_bg_reparented"], report
    assert report["lone_reparented"], report
    assert report["short_reaped"] and report["lone_reaped"], (report, err)
    assert report["mid_bg_still_tracked"], report
    assert report["signal"] == signal.SIGKILL, report
    # tool, its child, the reparented orphan, the late tool and its child
    assert report["leftover_killed"] == 5, (report, err)
    assert report["left"] == {}, report
    assert report["children"] == [], report  # nothing left unreaped


@pytest.mark.timeout(60)
def test_subreaper_never_kills_an_orphan_whose_owner_runs() -> None:
    report, err = run_scenario(SCENARIO_TWO_PROVIDERS)
    assert report["reparented"], report
    assert report["a_killed"] == 0 and report["alive_while_b_runs"], (report, err)
    assert report["b_killed"] == 1 and report["gone_with_b"], (report, err)
    assert report["children"] == [], report


# ------------------------------------------------------------ injected tracker


def test_injected_tracker_tracks_and_closes(h: Harness) -> None:
    tracker = DescendantTracker(interval=0.05)
    try:
        p, _, gpid = escaped_grandchild(h, "time.sleep(60)", tracker=tracker)
        assert wait_until(lambda: gpid in p.descendants, 3.0)  # its own thread's snapshot
        os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
        info = p.wait(5)
        assert info is not None and info.leftover_killed == 1
        assert wait_until(lambda: not pid_alive(gpid), 3.0)
    finally:
        thread = tracker._thread
        tracker.close()
    assert tracker.closed
    assert thread is not None and thread.name == "corral-descendants"
    assert not thread.is_alive()  # close() ended it


def test_a_closed_tracker_refuses_a_spawn(h: Harness) -> None:
    tracker = DescendantTracker()
    tracker.close()
    rec = Rec()
    p = ProviderProcess(
        [PY, "-c", "pass"],
        env={},
        cwd=str(h.tmp),
        on_line=rec.on_line,
        on_exit=rec.on_exit,
        tracker=tracker,
    )
    with pytest.raises(RuntimeError, match="closed"):
        p.start()
    assert p.pid is None and not p.alive and rec.exits == []
