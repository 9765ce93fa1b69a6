"""The CLI start-up benchmark still runs on its own: ``python -m bench.cli --runs 3``
prints its row and the ratio, and saves min / median / max of both commands.

No speed is asserted; only that both commands ran and a ratio came out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_bench_prints_min_median_max_and_ratio(short_tmp: Path) -> None:
    out = short_tmp / "cli.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--runs", "3", "--json", str(out)],
        cwd=ROOT,
        env=dict(os.environ, TMPDIR=str(short_tmp)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "min / median / max" in proc.stdout
    assert "corral ls --json" in proc.stdout and "ratio of the medians" in proc.stdout
    saved = json.loads(out.read_text())
    assert saved["runs"] == 3 and saved["ratio"] > 0
    assert all(row["min"] <= row["median"] <= row["max"] for row in saved["rows"].values())
