"""The benchmark still runs: ``bench/run.py --quick --only ping`` prints its table.

No speed is asserted here; only that the scenario ran and produced its rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = (
    "daemon.ping p50",
    "daemon.ping p99",
    "session.get p50",
    "session.get p99",
    "messages.load(500) p50",
    "messages.load(500) p99",
)


def test_bench_ping_prints_its_table(tmp_path: Path) -> None:
    out_json = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "ping",
            "--markdown",
            "--json",
            str(out_json),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| scenario | metric | value | unit | notes |" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| rpc |")]
    for metric in EXPECTED:
        assert any(f"| {metric} |" in row for row in rows), (metric, proc.stdout)
    assert "FAILED" not in proc.stdout

    saved = json.loads(out_json.read_text())
    assert saved["quick"] is True
    metrics = {row["metric"] for row in saved["rows"] if row["scenario"] == "rpc"}
    assert set(EXPECTED) <= metrics
    values = [row["value"] for row in saved["rows"] if row["metric"] in EXPECTED]
    assert all(isinstance(v, int | float) and v > 0 for v in values)
