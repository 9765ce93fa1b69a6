"""A daemon killed outright (SIGKILL) takes its providers along, and the next start
kills what they left running (from the provider ledger in the data directory).

The mock provider is shaped by a ``sitecustomize`` hook on the daemon's
PYTHONPATH, switched on per session through ``extraEnv``: ``deaf`` makes the
mock's stdin a pipe that never ends (so it cannot exit by itself when the
daemon dies: only the parent-death signal ends it); ``tree`` makes it start
a child in its own session and a tool in a session of its own (with a child),
which outlive it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.protocol.client import Client
from corral.supervisor.process.ledger import LEDGER_NAME, LedgerEntry, read_ledger, write_ledger
from tests.conftest import DaemonFactory
from tests.integration.helpers import poll
from tests.support.proc import SLEEP, children_of, kill_if_same, proc_stat, wait_until

pytestmark = pytest.mark.timeout(90)

HOOK = '''\
"""Shapes a mock provider for a test (only when its variables are set)."""
import os
import shutil
import subprocess


def _shape():
    out = os.environ.pop("PDEATHSIG_TEST_DIR", None)
    if not out:
        return
    mode = os.environ.pop("PDEATHSIG_TEST_MODE", "")
    pids = [os.getpid()]
    if mode == "deaf":
        r, _w = os.pipe()  # never written to, never closed: stdin never ends
        os.dup2(r, 0)
    elif mode == "tree":
        sleep = shutil.which("sleep") or "sleep"
        quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        same = subprocess.Popen([sleep, "600"], **quiet)
        tool = subprocess.Popen(["sh", "-c", f"{sleep} 600 & exec {sleep} 600"],
                                start_new_session=True, **quiet)
        pids += [same.pid, tool.pid]
    tmp = os.path.join(out, ".pids.tmp")
    with open(tmp, "w") as fh:
        fh.write(" ".join(str(p) for p in pids))
    os.replace(tmp, os.path.join(out, "pids"))


_shape()
'''


class Idents:
    """Processes seen by a test, killed at the end if they are still the same (by PID)."""

    def __init__(self) -> None:
        self.idents: dict[int, int] = {}
        self.popens: list[subprocess.Popen[bytes]] = []

    def track(self, pid: int) -> int:
        st = proc_stat(pid)
        assert st is not None and not st.dead, pid
        self.idents[pid] = st.start
        return st.start

    def start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True)
        self.popens.append(proc)
        self.track(proc.pid)
        return proc

    def alive(self, pid: int) -> bool:
        st = proc_stat(pid)
        return st is not None and not st.dead and st.start == self.idents[pid]

    def stop(self) -> None:
        for pid, start in self.idents.items():
            kill_if_same(pid, start)
        for proc in self.popens:
            proc.wait(5)


@pytest.fixture
def idents() -> Iterator[Idents]:
    seen = Idents()
    try:
        yield seen
    finally:
        seen.stop()


def hooked_env(short_tmp: Path) -> dict[str, str]:
    hook = short_tmp / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    paths = [str(hook), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def start_shaped(client: Client, project: str, out: Path, mode: str) -> dict[str, Any]:
    out.mkdir()
    return client.call(
        "agent.start",
        {
            "projectId": project,
            "provider": "mock",
            "prompt": "hello",
            "providerConfig": {"delayMs": 0, "hang": True},
            "extraEnv": {"PDEATHSIG_TEST_DIR": str(out), "PDEATHSIG_TEST_MODE": mode},
        },
    )


def read_pids(out: Path) -> list[int]:
    try:
        return [int(p) for p in (out / "pids").read_text().split()]
    except FileNotFoundError:
        return []


def entry_of(ledger: Path, pid: int) -> LedgerEntry | None:
    return next((e for e in read_ledger(ledger) if e.pid == pid), None)


def test_a_killed_daemon_takes_its_provider_along(
    daemon_factory: DaemonFactory, short_tmp: Path, idents: Idents
) -> None:
    d = daemon_factory("pd", env=hooked_env(short_tmp))
    ledger = d.data_dir / LEDGER_NAME
    with d.client() as client:
        sid = start_shaped(client, "deaf", short_tmp / "deaf", "deaf")["sessionId"]
    [mock] = poll(lambda: read_pids(short_tmp / "deaf"))
    start = idents.track(mock)
    assert mock in d.children()  # the daemon's provider
    entry = poll(lambda: entry_of(ledger, mock))
    assert (entry.start, entry.pgid, entry.sid, entry.session) == (start, mock, mock, sid)
    d.kill(reap_children=False)
    assert wait_until(lambda: not idents.alive(mock), 5.0), "the provider outlived the daemon"


def test_a_restart_kills_what_the_last_run_left_and_nothing_else(
    daemon_factory: DaemonFactory, short_tmp: Path, idents: Idents
) -> None:
    env = hooked_env(short_tmp)
    d = daemon_factory("sw", env=env)
    ledger = d.data_dir / LEDGER_NAME
    with d.client() as client:
        sid = start_shaped(client, "tree", short_tmp / "tree", "tree")["sessionId"]
    mock, same, tool = poll(lambda: read_pids(short_tmp / "tree"))
    for pid in (mock, same, tool):
        idents.track(pid)
    [tool_child] = poll(lambda: children_of(tool))
    idents.track(tool_child)
    # the ledger has seen the provider's descendants (the tool left its session)
    poll(
        lambda: (
            (e := entry_of(ledger, mock)) is not None
            and {same, tool, tool_child} <= set(e.descendants)
        )
    )
    d.kill(reap_children=False)
    assert wait_until(lambda: not idents.alive(mock), 5.0)
    left = (same, tool, tool_child)
    assert all(idents.alive(pid) for pid in left)  # what the parent-death signal misses

    # Beside it in the ledger: a process in a session of its own with a child
    # (recorded with its start time), and one whose recorded start time is not
    # its own (its PID was reused): that one and its child must survive.
    lone = idents.start(["sh", "-c", f"{SLEEP} 600 & exec {SLEEP} 600"])
    reused = idents.start(["sh", "-c", f"{SLEEP} 600 & exec {SLEEP} 600"])
    [lone_child] = poll(lambda: children_of(lone.pid))
    [reused_child] = poll(lambda: children_of(reused.pid))
    for pid in (lone_child, reused_child):
        idents.track(pid)
    write_ledger(
        ledger,
        [
            *read_ledger(ledger),
            LedgerEntry(lone.pid, idents.idents[lone.pid], lone.pid, lone.pid, "mock:lone", "lone"),
            LedgerEntry(
                reused.pid, idents.idents[reused.pid] - 1, reused.pid, reused.pid, "mock:r", "r"
            ),
        ],
    )

    d2 = daemon_factory("sw", env=env)  # same data directory
    killed = (*left, lone.pid, lone_child)
    assert wait_until(lambda: not any(idents.alive(pid) for pid in killed), 5.0), [
        pid for pid in killed if idents.alive(pid)
    ]
    assert lone.wait(5) == -signal.SIGKILL
    assert idents.alive(reused.pid) and idents.alive(reused_child)
    log = d2.log_tail(200_000)
    for pid in killed:
        assert log.count(f"killed pid {pid} (") == 1, (pid, log)
    assert f"killed pid {reused.pid} (" not in log
    assert f"killed pid {reused_child} (" not in log
    assert read_ledger(ledger) == []
    with d2.client() as client:
        stored = client.call("session.load", {"projectId": "tree"})["session"]
        assert stored["sessionId"] == sid and stored["error"] == "interrupted: daemon restarted"
        # one notification per interrupted session
        notes = poll(
            lambda: [
                n
                for n in client.call("notifications.list", {})["notifications"]
                if n.get("sessionId") == sid
            ]
        )
        assert [(n["kind"], n["message"]) for n in notes] == [
            ("agent_error", "tree: interrupted: daemon restarted")
        ]
        assert notes[0]["errorClass"] and isinstance(notes[0]["retryable"], bool)
