"""Tests for corral.supervisor.process.ledger (the live providers on disk) and
corral.supervisor.process.sweep (killing what a dead daemon's providers left)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from corral.supervisor.process.ledger import (
    REMOVE_COALESCE_S,
    LedgerEntry,
    ProviderLedger,
    read_ledger,
    write_ledger,
)
from corral.supervisor.process.sweep import sweep_ledger
from tests.support.proc import (
    PY,
    SLEEP,
    Harness,
    children_of,
    harness_fixture,  # noqa: F401  (the ``h`` fixture)
    kill_if_same,
    pid_alive,
    proc_stat,
    read_line,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)

# A provider-like tree: a child in its session, and a "tool" in a session of
# its own (sh, which starts a sleep and then becomes a sleep itself).
TREE = (
    "import shutil, subprocess, sys, time\n"
    "sleep = shutil.which('sleep') or 'sleep'\n"
    "same = subprocess.Popen([sleep, '600'])\n"
    "tool = subprocess.Popen(['sh', '-c', f'{sleep} 600 & exec {sleep} 600'],\n"
    "                        start_new_session=True)\n"
    "print(same.pid, tool.pid, flush=True)\n"
    "time.sleep(600)\n"
)
# Starts a grandchild in a session of its own, says its pid, then waits.
ESCAPING = (
    "import subprocess, sys, time\n"
    f"g = subprocess.Popen([{SLEEP!r}, '60'], start_new_session=True)\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def start_of(pid: int) -> int:
    st = proc_stat(pid)
    assert st is not None and not st.dead, pid
    return st.start


class Procs:
    """Processes a test started (and those they started), stopped by PID at the end."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.idents: list[tuple[int, int]] = []

    def start(self, argv: list[str], **kw: object) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = subprocess.Popen(argv, **kw)  # type: ignore[call-overload]
        self.popens.append(proc)
        self.track(proc.pid)
        return proc

    def track(self, pid: int) -> int:
        start = start_of(pid)
        self.idents.append((pid, start))
        return start

    def stop(self) -> None:
        for pid, start in self.idents:
            kill_if_same(pid, start)
        for proc in self.popens:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.stop()


# ------------------------------------------------------------------ the file


def test_entries_round_trip_atomically(tmp_path: Path) -> None:
    path = tmp_path / "providers.json"
    entries = [
        LedgerEntry(100, 5, 100, 100, "mock:s1", "s1", {101: 6, 102: 7}),
        LedgerEntry(200, 9, 200, 200, "codex:s2", "s2"),
    ]
    write_ledger(path, entries)
    assert read_ledger(path) == entries
    write_ledger(path, entries[1:])
    assert read_ledger(path) == entries[1:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["providers.json"]  # no temp left
    raw = orjson.loads(path.read_bytes())
    assert raw["pid"] == os.getpid()
    assert raw["providers"][0]["sid"] == 200


def test_a_burst_of_removals_is_written_together_and_close_writes_what_is_pending(
    tmp_path: Path,
) -> None:
    path = tmp_path / "providers.json"
    ledger = ProviderLedger(path, interval=30.0)  # its thread flushes; no refresh meanwhile
    try:
        for pid in range(1000, 1300):
            ledger.add(pid, 1, name=f"mock:s{pid}", descendants=dict)
        assert len(read_ledger(path)) == 300
        ledger.remove(1000)
        assert len(read_ledger(path)) == 299  # a lone removal: written at once
        for pid in range(1001, 1300):
            ledger.remove(pid)
        assert ledger.entries() == []
        assert wait_until(lambda: read_ledger(path) == [], 10 * REMOVE_COALESCE_S + 2.0)
        ledger.add(5000, 1, name="mock:a", descendants=dict)
        ledger.add(5001, 1, name="mock:b", descendants=dict)
        ledger.remove(5000)
        ledger.remove(5001)  # right after the previous one: pending
    finally:
        ledger.close()
    assert read_ledger(path) == []  # close wrote it


def test_a_damaged_ledger_reads_as_empty_and_bad_entries_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "providers.json"
    assert read_ledger(path) == []  # none yet
    path.write_bytes(b"{not json")
    assert read_ledger(path) == []
    path.write_bytes(b"[1, 2]")
    assert read_ledger(path) == []
    good = {"pid": 7, "start": 3, "pgid": 7, "sid": 7, "descendants": [[8, 4], ["x", 1], [9]]}
    bad = [{"pid": 0, "start": 1, "pgid": 1, "sid": 1}, {"pid": 5}, "x", {"pid": True}]
    path.write_bytes(orjson.dumps({"providers": [*bad, good]}))
    assert read_ledger(path) == [LedgerEntry(7, 3, 7, 7, "", "", {8: 4})]


def test_a_provider_is_recorded_with_its_descendants_until_it_is_reaped(
    h: Harness, tmp_path: Path
) -> None:
    path = tmp_path / "providers.json"
    ledger = ProviderLedger(path, interval=0.05)
    try:
        p, rec = h.spawn(ESCAPING, ledger=ledger, name="mock:s-123")
        assert p.pid is not None
        [entry] = read_ledger(path)  # written before start() returned
        assert entry.pid == p.pid and entry.start == start_of(p.pid)
        assert entry.pgid == entry.sid == p.pid
        assert (entry.name, entry.session) == ("mock:s-123", "s-123")
        gpid = int(rec.wait_lines(1)[0])
        h.track_ident(gpid)
        gstart = start_of(gpid)
        assert wait_until(lambda: read_ledger(path)[0].descendants.get(gpid) == gstart, 5.0)
        assert ledger.entries() == read_ledger(path)
        p.terminate(())
        assert p.wait(5) is not None
        assert read_ledger(path) == [] and ledger.entries() == []
    finally:
        ledger.close()


# ------------------------------------------------------------------ the sweep


def test_the_sweep_kills_a_survivor_its_session_and_tools_but_not_a_reused_pid(
    tmp_path: Path, procs: Procs, caplog: pytest.LogCaptureFixture
) -> None:
    provider = procs.start([PY, "-c", TREE], start_new_session=True, stdout=subprocess.PIPE)
    same, tool = (int(x) for x in read_line(provider.stdout).split())
    procs.track(same)
    tool_start = procs.track(tool)
    assert wait_until(lambda: children_of(tool) != [], 5.0)
    [tool_child] = children_of(tool)
    procs.track(tool_child)
    # Another process (with a child) now holds a PID the ledger names with
    # another start time: a reused PID.
    other = procs.start(["sh", "-c", f"{SLEEP} 600 & exec {SLEEP} 600"], start_new_session=True)
    assert wait_until(lambda: children_of(other.pid) != [], 5.0)
    [other_child] = children_of(other.pid)
    procs.track(other_child)
    path = tmp_path / "providers.json"
    write_ledger(
        path,
        [
            LedgerEntry(
                provider.pid,
                start_of(provider.pid),
                provider.pid,
                provider.pid,
                "mock:s1",
                "s1",
                {tool: tool_start},
            ),
            LedgerEntry(other.pid, start_of(other.pid) - 1, other.pid, other.pid, "mock:s2", "s2"),
        ],
    )
    with caplog.at_level(logging.INFO, logger="corral.process"):
        killed = sweep_ledger(path)
    assert set(killed) == {provider.pid, same, tool, tool_child}
    assert provider.wait(5) < 0
    for pid in (same, tool, tool_child):
        assert wait_until(lambda pid=pid: not pid_alive(pid), 3.0), pid  # type: ignore[misc]
    assert pid_alive(other.pid) and pid_alive(other_child)  # reused: never touched
    assert read_ledger(path) == [] and path.exists()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("killed pid")]
    assert len(lines) == 4
    assert any(f"killed pid {tool} (sleep)" in line and "mock:s1" in line for line in lines)
    assert any(
        f"pid {other.pid}" in r.getMessage() and "reused" in r.getMessage() for r in caplog.records
    )


def test_the_sweep_kills_the_session_of_a_leader_that_is_gone(tmp_path: Path, procs: Procs) -> None:
    leader = procs.start(
        [PY, "-c", f"import subprocess; print(subprocess.Popen([{SLEEP!r}, '600']).pid)"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    leader_start = start_of(leader.pid)
    orphan = int(read_line(leader.stdout))
    procs.track(orphan)
    assert leader.wait(5) == 0  # the leader is gone (reaped), its child lives on
    st = proc_stat(orphan)
    assert st is not None and st.session == leader.pid and st.ppid != leader.pid
    path = tmp_path / "providers.json"
    write_ledger(path, [LedgerEntry(leader.pid, leader_start, leader.pid, leader.pid, "x:1")])
    assert set(sweep_ledger(path)) == {orphan}
    assert wait_until(lambda: not pid_alive(orphan), 3.0)


def test_nothing_to_sweep(tmp_path: Path) -> None:
    path = tmp_path / "providers.json"
    assert sweep_ledger(path) == {}
    assert not path.exists()
    # a provider that is simply gone
    write_ledger(path, [LedgerEntry(2**22 - 1, 1, 2**22 - 1, 2**22 - 1, "x:1")])
    assert sweep_ledger(path) == {}
    assert read_ledger(path) == []
