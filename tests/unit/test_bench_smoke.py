"""The benchmarks still run: ``bench/run --quick`` prints one table with every row.

No speed is asserted: only that every benchmark produced its rows, each with a
figure (min / median / max) beside its baseline where it has one, that the
goal rows say met or not met, and that a quick run leaves bench/results.md
alone. The peer row may instead say why circus could not be installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

EXPECTED: dict[str, tuple[str, ...]] = {
    "rpc": (
        "session.get pipelined, 1 client",
        "session.get pipelined, 4 client processes",
        "session.get sequential p50",
        "session.get sequential p99",
    ),
    "ping": (
        "daemon.ping pipelined, 1 client",
        "daemon.ping pipelined, 4 client processes",
        "daemon.ping sequential p50",
        "daemon.ping sequential p99",
    ),
    "ingest": ("messages/s end to end", "emit→receive p50", "emit→receive p99"),
    "rpc under ingest": (
        "daemon.ping p50",
        "daemon.ping p99",
        "session.get p50",
        "session.get p99",
    ),
    "history": ("messages.load page of 500, p50", "messages.load page of 500, p99"),
    "scale": (
        "daemon RSS,",
        "daemon threads,",
        "daemon fds,",
        "daemon idle CPU,",
        "daemon.ping p99,",
        "agent.start, last",
        "shutdown,",
        "threads per live session",
        "descriptors per live session",
        "daemon RSS per live session",
    ),
    "start": ("agent.start → first agent.message", "agent.start → the mock's first message"),
    "cli": ("corral ls --json",),
}
PEER = (
    "session.get vs circusd status: pipelined, 1 client",
    "session.get vs circusd status: pipelined, 4 client processes",
    "session.get vs circusd status: sequential p50",
    "session.get vs circusd status: sequential p99",
)
GOALS = {
    ("rpc", "session.get pipelined, 1 client"): "≥ 0.50",
    ("rpc", "session.get sequential p50"): "≤ 2",
    ("ingest", "messages/s end to end"): "≥ 0.70",
    ("rpc under ingest", "daemon.ping p50"): "≤ 2 ms",
    ("rpc under ingest", "session.get p50"): "≤ 5 ms",
    ("scale", "daemon idle CPU,"): "≤ 1 %",
    ("scale", "agent.start, last"): "≤ 2",
    ("scale", "shutdown,"): "≤ 10 s",
    ("scale", "threads per live session"): "≤ 1.1",
    ("scale", "descriptors per live session"): "≤ 5",
    ("scale", "daemon RSS per live session"): "≤ 256 KiB",
}
FIGURE = re.compile(r"^-?[\d,.]+( / -?[\d,.]+ / -?[\d,.]+| \(1 run\))$")


def table_rows(out: str) -> list[list[str]]:
    rows = []
    for line in out.splitlines():
        if line.startswith("| ") and not line.startswith(("| benchmark |", "|---")):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def find(rows: list[list[str]], bench: str, metric: str) -> list[str]:
    found = [r for r in rows if r[0] == bench and r[1].startswith(metric)]
    assert len(found) == 1, (bench, metric, [r[:2] for r in rows])
    return found[0]


@pytest.mark.timeout(900)
def test_bench_run_quick_prints_every_row(short_tmp: Path) -> None:
    results = ROOT / "bench" / "results.md"
    before = results.stat().st_mtime_ns if results.exists() else None
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(short_tmp))
    work = short_tmp / "cwd"
    work.mkdir()
    proc = subprocess.run(
        [str(ROOT / "bench" / "run"), "--quick"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=880,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    out = proc.stdout
    assert "| benchmark (QUICK run" in out and "nproc" in out
    rows = table_rows(out)
    assert all(len(r) == 9 for r in rows), rows
    assert not any("FAILED" in r[3] for r in rows), out

    for bench, metrics in EXPECTED.items():
        for metric in metrics:
            row = find(rows, bench, metric)
            assert FIGURE.match(row[3]), row  # corral: min / median / max
            if row[4] != "—":
                assert FIGURE.match(row[4]), row  # the baseline, same shape
    for bench, metric in (("rpc", "session.get sequential p50"), ("ingest", "messages/s")):
        assert find(rows, bench, metric)[5].endswith("\u00d7")  # a ratio to its baseline

    for (bench, metric), goal in GOALS.items():
        row = find(rows, bench, metric)
        assert row[6].startswith(goal), row
        assert row[7] in ("met", "not met"), row

    peer = [r for r in rows if r[0] == "peer"]
    if len(peer) == 1:  # circus could not be installed here: the row says so
        assert "circus not run" in peer[0][8], peer
    else:
        for metric in PEER:
            row = find(rows, "peer", metric)
            assert FIGURE.match(row[3]) and FIGURE.match(row[4]), row

    after = results.stat().st_mtime_ns if results.exists() else None
    assert after == before, "a quick run must not write bench/results.md"
