"""rpc: ``session.get`` on a live session, pipelined (32 in flight) from 1 and 4
client processes and sequentially (p50/p99), beside a bare pyzmq ROUTER echo
(:mod:`bench.echo`) giving the same reply. The same client processes
(:mod:`bench.clients`) load both, alternating which goes first in each run.

``python -m bench.rpc [--quick]``; :func:`compare` also serves ``ping`` and ``peer``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.clients import WorkerPool, corral_request
from bench.common import (
    Context,
    Row,
    bench_daemon,
    order,
    percentile,
    ratio_at_least,
    ratio_at_most,
    standalone,
    start_mock,
    wait_status,
)
from bench.echo import EchoServer

WINDOW = 32
PIPELINED_GOAL = ratio_at_least(0.50)
SEQUENTIAL_GOAL = ratio_at_most(2.0)


@dataclass(frozen=True)
class Sizes:
    one_client: int  # calls of the single pipelining client
    each_of_four: int  # calls of each of the 4 pipelining clients
    sequential: int  # sequential calls (p50/p99)
    budget_s: float  # longest sequential series


def sizes(ctx: Context) -> Sizes:
    full = Sizes(one_client=10_000, each_of_four=4_000, sequential=2_000, budget_s=20.0)
    quick = Sizes(one_client=600, each_of_four=200, sequential=150, budget_s=2.0)
    result: Sizes = ctx.pick(full, quick)
    return result


Side = tuple[str, str, dict[str, Any]]
"""(endpoint, framing, request template)."""


def figures(pool: WorkerPool, side: Side, size: Sizes) -> dict[str, float]:
    endpoint, framing, request = side
    one = pool.pipelined(endpoint, framing, request, 1, size.one_client, WINDOW)
    four = pool.pipelined(endpoint, framing, request, 4, size.each_of_four, WINDOW)
    lat = pool.sequential(endpoint, framing, request, size.sequential, size.budget_s)
    return {
        "one": one,
        "four": four,
        "p50": percentile(lat, 50) * 1e6,
        "p99": percentile(lat, 99) * 1e6,
        "n": float(len(lat)),
    }


def compare(
    ctx: Context,
    pool: WorkerPool,
    bench: str,
    label: str,
    corral: Side,
    baseline: Side,
    *,
    goals: bool,
    note: str,
    size: Sizes | None = None,
) -> list[Row]:
    """The four RPC figures of both sides over ``ctx.runs`` alternating runs."""
    size = size or sizes(ctx)
    got: dict[str, dict[str, list[float]]] = {"corral": defaultdict(list), "baseline": {}}
    got["baseline"] = defaultdict(list)
    sides = {"corral": corral, "baseline": baseline}
    for run in range(ctx.runs):
        for name in order(run):
            for key, value in figures(pool, sides[name], size).items():
                got[name][key].append(value)
        ctx.log(f"  {bench} run {run + 1}/{ctx.runs}")
    c, b = got["corral"], got["baseline"]
    seq_n = int(min(c["n"] + b["n"]))
    return [
        Row(
            bench,
            f"{label} pipelined, 1 client ({WINDOW} in flight)",
            "calls/s",
            c["one"],
            b["one"],
            PIPELINED_GOAL if goals else None,
            f"{size.one_client:,} calls per run; {note}",
        ),
        Row(
            bench,
            f"{label} pipelined, 4 client processes",
            "calls/s",
            c["four"],
            b["four"],
            PIPELINED_GOAL if goals else None,
            f"4 x {size.each_of_four:,} calls per run, {WINDOW} in flight each",
        ),
        Row(
            bench,
            f"{label} sequential p50",
            "µs",
            c["p50"],
            b["p50"],
            SEQUENTIAL_GOAL if goals else None,
            f"≥ {seq_n:,} calls per run, one at a time",
        ),
        Row(bench, f"{label} sequential p99", "µs", c["p99"], b["p99"]),
    ]


BASELINE_NOTE = "baseline: bare ROUTER echo (orjson, dict dispatch), own process"


def measure_method(ctx: Context, bench: str, method: str) -> list[Row]:
    """``method`` on corral against the echo baseline answering corral's reply."""
    with (
        bench_daemon(ctx, bench) as daemon,
        daemon.client() as client,
        WorkerPool(4) as pool,
    ):
        params: dict[str, Any] | None = None
        if method == "session.get":
            start_mock(client, "live", hang=True)
            wait_status(client, "live", ("running",), 30.0)
            params = {"projectId": "live"}
        request = corral_request(method, params)
        reply = client.call(method, params)
        with EchoServer(daemon.tmp, {method: reply}) as echo:
            return compare(
                ctx,
                pool,
                bench,
                method,
                (daemon.rpc_url, "corral", request),
                (echo.endpoint, "corral", request),
                goals=True,
                note=BASELINE_NOTE,
            )


def run(ctx: Context) -> list[Row]:
    return measure_method(ctx, "rpc", "session.get")


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
