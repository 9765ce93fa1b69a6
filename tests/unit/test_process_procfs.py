"""Tests for the /proc helpers (runtime ones in corral.supervisor.process.procfs, the rest
in tests.support.proc) and the subreaper prctl."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support.proc import (
    PY,
    SLEEP,
    children_of,
    descendants,
    is_subreaper,
    parent_of,
    pid_alive,
    pids_in_group,
    proc_stat,
    process_group_of,
    read_line,
    read_stat,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)


# ------------------------------------------------------------------ proctools


def test_proctools_basics() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    assert os.getpid() in pids_in_group(os.getpgrp())
    assert pids_in_group(0) == []
    assert process_group_of(os.getpid()) == os.getpgrp()
    me = proc_stat(os.getpid())
    assert me is not None and me.pid == os.getpid() and not me.dead
    assert (me.ppid, me.pgrp, me.session) == (os.getppid(), os.getpgrp(), os.getsid(0))
    assert read_stat(os.getpid()) == (me.state, me.ppid, me.pgrp)
    assert parent_of(os.getpid()) == os.getppid()
    assert proc_stat(0) is None and parent_of(-1) is None


def test_proctools_tree_helpers() -> None:
    code = (
        "import subprocess, sys\n"
        f"g = subprocess.Popen([{SLEEP!r}, '60'], start_new_session=True)\n"
        "print(g.pid, flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    gpid = 0
    try:
        gpid = int(read_line(child.stdout))
        assert children_of(child.pid) == [gpid]
        assert descendants(child.pid) == [gpid]
        assert {child.pid, gpid} <= set(descendants(os.getpid()))
        assert len(descendants(os.getpid(), limit=1)) == 1
        assert parent_of(gpid) == child.pid
        st = proc_stat(gpid)
        assert st is not None and (st.session, st.pgrp) == (gpid, gpid)
        assert children_of(gpid) == [] and descendants(gpid) == []
    finally:
        if gpid and pid_alive(gpid) and parent_of(gpid) == child.pid:
            os.kill(gpid, signal.SIGKILL)  # its parent still runs: the PID is still it
        child.kill()
        child.wait(5)
    assert wait_until(lambda: not pid_alive(gpid), 3.0)


def test_become_subreaper_in_a_child() -> None:
    code = (
        "from corral.supervisor.process import become_subreaper, is_subreaper\n"
        "print(is_subreaper(), become_subreaper(), is_subreaper())\n"
    )
    out = subprocess.run(
        [PY, "-c", code], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert out.split() == ["False", "True", "True"]
    assert not is_subreaper()  # only that child became one
