"""How fast a `corral` client command starts: `corral ls --json` end to end,
against the interpreter itself importing ZeroMQ and orjson.

Run from the repository root::

    python bench/cli.py              # 10 runs of each
    python bench/cli.py --runs 3 --json results.json

A daemon is started in a fresh short temporary directory (and stopped by PID at
the end); each run is a new process, the two commands alternate so that both
see the same machine load. Printed: min, median and max wall time of each, and
the ratio of the medians. Nothing is asserted: a client command should cost
little more than the interpreter's own start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corral.supervisor.background import DaemonProcess

BASELINE = [sys.executable, "-c", "import zmq, orjson"]


def corral_command() -> list[str]:
    """The installed ``corral`` script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("corral")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "corral.supervisor"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, in seconds (the command must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return time.perf_counter() - t0


def summary(times: list[float]) -> dict[str, float]:
    """min, median and max in milliseconds."""
    return {
        "min": min(times) * 1000,
        "median": statistics.median(times) * 1000,
        "max": max(times) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (>= 3)")
    parser.add_argument("--json", metavar="PATH", help="also save the numbers as JSON")
    args = parser.parse_args(argv)
    runs = max(3, args.runs)
    base = Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))
    daemon = DaemonProcess(base / "run" / "corral", base / "data", log_path=base / "daemon.log")
    env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_RPC", "CORRAL_EVENTS")}
    try:
        daemon.start()
        ls = [*corral_command(), "ls", "--json", "--rpc", daemon.rpc_url]
        ls += ["--events", daemon.events_url]
        timed(ls, env)  # warm the file cache once, for both
        timed(BASELINE, env)
        cli: list[float] = []
        baseline: list[float] = []
        for _ in range(runs):
            cli.append(timed(ls, env))
            baseline.append(timed(BASELINE, env))
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows = {"corral ls --json": summary(cli), "python -c 'import zmq, orjson'": summary(baseline)}
    ratio = rows["corral ls --json"]["median"] / rows["python -c 'import zmq, orjson'"]["median"]
    width = max(len(name) for name in rows)
    print(f"{'command':<{width}}  {'min':>8}  {'median':>8}  {'max':>8}   ({runs} runs, ms)")
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['min']:8.1f}  {row['median']:8.1f}  {row['max']:8.1f}")
    print(f"ratio of the medians: {ratio:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "rows": rows, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
