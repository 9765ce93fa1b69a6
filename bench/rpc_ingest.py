"""rpc under ingest: ``daemon.ping`` and ``session.get`` (on a live session)
p50/p99 while 15 mock sessions flood (quick: 4), beside the same calls on the same daemon
idle, in the same run. Calls alternate ping / get, one at a time, from the lean
client of :mod:`bench.clients`; the floods are stopped after each series.
``python -m bench.rpc_ingest [--quick]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bench.clients import LeanClient, corral_request
from bench.common import (
    Context,
    Row,
    bench_daemon,
    mock_request,
    percentile,
    standalone,
    start_mock,
    value_at_most,
    wait_status,
)
from corral.protocol.client import Client

PING_GOAL = value_at_most(2.0, "ms")  # on the p50s, as the performance goals state them
GET_GOAL = value_at_most(5.0, "ms")


@dataclass(frozen=True)
class Sizes:
    flooders: int  # sessions flooding
    calls: int  # calls of each method per series
    budget_s: float  # longest series


def sizes(ctx: Context) -> Sizes:
    result: Sizes = ctx.pick(
        Sizes(flooders=15, calls=1_000, budget_s=30.0),
        Sizes(flooders=4, calls=100, budget_s=1.0),
    )
    return result


def series(ping: LeanClient, get: LeanClient, size: Sizes) -> tuple[list[float], list[float]]:
    """Alternating ping / session.get round-trips (ms) until ``calls`` each or the budget."""
    pings: list[float] = []
    gets: list[float] = []
    deadline = time.monotonic() + size.budget_s
    while len(pings) < size.calls and time.monotonic() < deadline:
        t = time.perf_counter()
        ping.call()
        pings.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        reply = get.call()
        gets.append((time.perf_counter() - t) * 1e3)
        if "error" in reply:
            raise RuntimeError(f"session.get answered {reply['error']}")
    return pings, gets


def stored(client: Client, projects: list[str]) -> tuple[int, int]:
    """(sessions running, messages stored) of the flooding projects."""
    sessions = client.pipeline(("session.get", {"projectId": p}) for p in projects)
    running = sum(1 for s in sessions if s["session"]["status"] == "running")
    return running, sum(int(s["session"]["lastSeqId"]) for s in sessions)


def run(ctx: Context) -> list[Row]:
    size = sizes(ctx)
    figures: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    calls: list[int] = []
    flooding: list[int] = []
    stored_rate: list[float] = []
    with bench_daemon(ctx, "rpcingest", {"cleanup_grace_ms": "0"}) as daemon:
        with daemon.client() as client:
            start_mock(client, "live", hang=True)
            wait_status(client, "live", ("running",), 30.0)
        ping = LeanClient(daemon.rpc_url, "corral", corral_request("daemon.ping", None))
        get = LeanClient(
            daemon.rpc_url, "corral", corral_request("session.get", {"projectId": "live"})
        )
        try:
            for _ in range(20):
                ping.check()
                get.check()
            with daemon.client(timeout=60.0) as client:
                for i in range(ctx.runs):
                    pings, gets = series(ping, get, size)
                    for name, values in (("ping idle", pings), ("get idle", gets)):
                        add(f"{name} p50", percentile(values, 50))
                        add(f"{name} p99", percentile(values, 99))
                    projects = [f"flood{i}-{k}" for k in range(size.flooders)]
                    client.pipeline(
                        ("agent.start", mock_request(p, "flood", {"flood": 1_000_000}))
                        for p in projects
                    )
                    time.sleep(0.5)  # the mock processes start printing
                    before = stored(client, projects)[1]
                    t0 = time.perf_counter()
                    pings, gets = series(ping, get, size)
                    window = time.perf_counter() - t0
                    running, after = stored(client, projects)
                    client.pipeline(("agent.stop", {"projectId": p}) for p in projects)
                    for name, values in (("ping flood", pings), ("get flood", gets)):
                        add(f"{name} p50", percentile(values, 50))
                        add(f"{name} p99", percentile(values, 99))
                    calls.append(len(pings))
                    flooding.append(running)
                    stored_rate.append((after - before) / max(window, 1e-9))
                    ctx.log(f"  rpc under ingest run {i + 1}/{ctx.runs}")
        finally:
            ping.close()
            get.close()
    f = figures
    return [
        Row(
            "rpc under ingest",
            f"daemon.ping p50, {size.flooders} sessions flooding (baseline: idle)",
            "ms",
            f["ping flood p50"],
            f["ping idle p50"],
            PING_GOAL,
            note=f"calls of each per series: {'/'.join(map(str, calls))}; sessions still "
            f"flooding after each series: {'/'.join(map(str, flooding))} of {size.flooders}; "
            f"messages stored per s during the series: "
            + "/".join(f"{r:,.0f}" for r in stored_rate),
        ),
        Row(
            "rpc under ingest",
            f"daemon.ping p99, {size.flooders} sessions flooding (baseline: idle)",
            "ms",
            f["ping flood p99"],
            f["ping idle p99"],
        ),
        Row(
            "rpc under ingest",
            f"session.get p50, {size.flooders} sessions flooding (baseline: idle)",
            "ms",
            f["get flood p50"],
            f["get idle p50"],
            GET_GOAL,
        ),
        Row(
            "rpc under ingest",
            f"session.get p99, {size.flooders} sessions flooding (baseline: idle)",
            "ms",
            f["get flood p99"],
            f["get idle p99"],
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
