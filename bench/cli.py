"""cli: how fast a `corral` client command starts: `corral ls --json` end to end,
against the interpreter itself importing ZeroMQ and orjson.

A daemon is started in a fresh short temporary directory (and stopped by PID at
the end); each run is a new process, the two commands alternate so that both
see the same machine load. Each figure is one command's wall time; min, median
and max over the runs, and the ratio of the medians. Nothing is asserted: a
client command should cost little more than the interpreter's own start-up.

    python -m bench.cli                    # 10 runs of each, as a table
    python -m bench.cli --runs 3 --json results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Context, Row, bench_daemon, daemon_env, order, table

BASELINE = [sys.executable, "-c", "import zmq, orjson"]


def corral_command() -> list[str]:
    """The installed ``corral`` script next to this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("corral")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "corral.supervisor"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one run, in milliseconds (the command must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True)
    return (time.perf_counter() - t0) * 1000


def measure(ctx: Context, runs: int) -> tuple[list[float], list[float]]:
    """(corral ls --json, baseline) wall times in ms, ``runs`` of each."""
    cli: list[float] = []
    baseline: list[float] = []
    with bench_daemon(ctx, "cli") as daemon:
        env = daemon_env(daemon.tmp)
        ls = [*corral_command(), "ls", "--json", "--rpc", daemon.rpc_url]
        ls += ["--events", daemon.events_url]
        timed(ls, env)  # warm the file cache once, for both
        timed(BASELINE, env)
        for i in range(runs):
            for side in order(i):
                if side == "corral":
                    cli.append(timed(ls, env))
                else:
                    baseline.append(timed(BASELINE, env))
    return cli, baseline


def run(ctx: Context) -> list[Row]:
    runs = max(ctx.runs, ctx.pick(10, 3))
    cli, baseline = measure(ctx, runs)
    return [
        Row(
            "cli",
            "corral ls --json, end to end",
            "ms",
            cli,
            baseline,
            note=f"{runs} runs of each, alternating; baseline: python -c 'import zmq, orjson'",
        )
    ]


def summary(times: list[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "max": max(times)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs of each command (>= 3)")
    parser.add_argument("--json", metavar="PATH", help="also save the numbers as JSON")
    args = parser.parse_args(argv)
    runs = max(3, args.runs)
    ctx = Context(runs=runs, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    cli, baseline = measure(ctx, runs)
    row = Row("cli", "corral ls --json, end to end", "ms", cli, baseline, note=f"{runs} runs")
    print(table([row]))
    ratio = row.ratio or float("nan")
    print(f"ratio of the medians: {ratio:.2f}")
    if args.json:
        rows = {
            "corral ls --json": summary(cli),
            "python -c 'import zmq, orjson'": summary(baseline),
        }
        Path(args.json).write_text(json.dumps({"runs": runs, "rows": rows, "ratio": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
