"""Every corral benchmark, one table: corral beside its baseline in the same run.

    bench/run                  # full sizes, 5 runs per figure; writes bench/results.md
    bench/run --quick          # small sizes, 3 runs: a smoke run, not figures to quote
    bench/run --only rpc,scale --keep

(``bench/run`` runs ``python -m bench.run`` with the repository on the path.)
Benchmarks, in order: rpc, ping, ingest, rpc_ingest, history, scale, start,
cli, peer (see bench/README.md). One that fails becomes a FAILED row and the
others still run; the exit code is then 1. No speed is ever a failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench import cli, history, ingest, peer, ping, rpc, rpc_ingest, scale, start
from bench.common import REPO, Context, Row, failed_row, table

BENCHMARKS: dict[str, Callable[[Context], list[Row]]] = {
    "rpc": rpc.run,
    "ping": ping.run,
    "ingest": ingest.run,
    "rpc_ingest": rpc_ingest.run,
    "history": history.run,
    "scale": scale.run,
    "start": start.run,
    "cli": cli.run,
    "peer": peer.run,
}

RESULTS = Path(__file__).resolve().parent / "results.md"

LEGEND = """\
Each cell is min / median / max over the runs (one figure per run; the two sides
alternate which goes first). ratio = median of corral / median of the baseline.
A goal is checked on the median: of the ratio, or of corral's figure. Speed is
reported, never asserted."""


def cpu_used() -> float:
    """CPU seconds of this process and its reaped children (daemons, their mocks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes" if dirty else "")


def version() -> str:
    try:
        return importlib.metadata.version("corral")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def header(quick: bool, runs: int, chosen: list[str]) -> str:
    kind = (
        "QUICK run (smaller sizes, e.g. 60 sessions for scale and 50,000 messages for "
        "history; 3 runs): a smoke run, not figures to quote"
        if quick
        else "full run"
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"# corral benchmarks: {kind}",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- corral {version()}, commit {commit()}",
        f"- machine: nproc {os.cpu_count()}, {cpu_model()}, Python {platform.python_version()}",
        f"- load average at the start: {load}",
        f"- runs per figure: {runs}; benchmarks: {', '.join(chosen)}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 runs")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(BENCHMARKS)}")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (at least 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (daemon logs)")
    parser.add_argument(
        "--out",
        metavar="PATH",
        help="write the report here (default: bench/results.md after a full run of all)",
    )
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(BENCHMARKS)
    unknown = [s for s in chosen if s not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    runs = max(3, args.runs or (3 if args.quick else 5))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = Context(quick=args.quick, runs=runs, keep=args.keep, log=log)
    head = header(args.quick, runs, chosen)
    rows: list[Row] = []
    took: list[str] = []
    t_all = time.perf_counter()
    for name in chosen:
        log(f"running {name} ...")
        t, cpu = time.perf_counter(), cpu_used()
        try:
            rows += BENCHMARKS[name](ctx)
        except Exception as exc:  # one broken benchmark must not hide the others
            rows.append(failed_row(name, "FAILED", exc))
        took.append(f"{name} {time.perf_counter() - t:.0f} s")
        log(f"  {name}: {time.perf_counter() - t:.1f} s, {cpu_used() - cpu:.1f} s of CPU")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    foot = (
        f"Took {time.perf_counter() - t_all:.0f} s ({', '.join(took)}); "
        f"load average at the end: {load}."
    )
    report = f"{head}\n\n{table(rows, args.quick)}\n\n{LEGEND}\n\n{foot}\n"
    print(report)
    out = Path(args.out) if args.out else None
    if out is None and not args.quick and not args.only:
        out = RESULTS
    if out is not None:
        out.write_text(report)
        log(f"written to {out}")
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
