"""corral speed benchmark: each scenario against its own real daemon, printed as a table.

Run from the repository root::

    python bench/run.py            # full sizes
    python bench/run.py --quick    # small sizes (a few seconds per scenario)
    python bench/run.py --only ping,start --markdown --json results.json

Scenarios (``--only`` names): ``flood``, ``parallel``, ``ping`` (RPC latency),
``rw`` (reads during a write flood), ``start``. Every scenario starts a daemon
in a fresh short temporary directory (ipc paths are limited to ~107 bytes),
talks to it over ipc only, and stops it by PID at the end. Every loop is
bounded both in count and in time. Nothing here asserts a speed: the numbers
are measured and printed, anomalies (event gaps, missing messages, errors in
the daemon log) are reported as rows and notes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess

SCENARIOS = ("flood", "parallel", "ping", "rw", "start")
TERMINAL = ("done", "error")


# ----------------------------------------------------------------- results


@dataclass
class Row:
    scenario: str
    metric: str
    value: float | int | str
    unit: str
    notes: str = ""


@dataclass(frozen=True)
class Sizes:
    flood: int
    parallel_k: int
    parallel_m: int
    rpc_n: int
    load_n: int
    rw_flood: int
    rw_max_reads: int
    start_n: int
    wait_s: float  # longest wait for a flood or a session to end
    budget_s: float  # longest time spent on one latency series


FULL = Sizes(
    flood=20_000,
    parallel_k=20,
    parallel_m=2_000,
    rpc_n=2_000,
    load_n=200,
    rw_flood=50_000,
    rw_max_reads=2_000,
    start_n=20,
    wait_s=300.0,
    budget_s=60.0,
)
QUICK = Sizes(
    flood=2_000,
    parallel_k=5,
    parallel_m=400,
    rpc_n=300,
    load_n=50,
    rw_flood=5_000,
    rw_max_reads=300,
    start_n=5,
    wait_s=60.0,
    budget_s=5.0,
)


@dataclass
class Context:
    sizes: Sizes
    keep: bool = False
    log: Callable[[str], None] = field(default=lambda _msg: None)


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(data)))
    return data[min(rank, len(data)) - 1]


# ----------------------------------------------------------------- daemon

_LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
_LOG_PREFIX = re.compile(r"^\S+ \S+ ")  # "<date> <time> " of the daemon's log format


def log_problems(text: str) -> list[str]:
    """The WARNING/ERROR/CRITICAL/Traceback lines of a daemon log, without timestamps."""
    return [_LOG_PREFIX.sub("", line) for line in text.splitlines() if _LOG_PROBLEM.search(line)]


@contextlib.contextmanager
def bench_daemon(ctx: Context, name: str, problems: list[str]) -> Iterator[DaemonProcess]:
    """A daemon on a fresh short temp dir; stopped (then killed) by PID on exit.

    The WARNING/ERROR lines of its log are appended to ``problems``.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f"cb-{name[:8]}-", dir="/tmp"))
    env = dict(os.environ)
    for key in ("CORRAL_RPC", "CORRAL_EVENTS", "CORRAL_DATA_DIR"):
        env.pop(key, None)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    daemon = DaemonProcess(
        tmp / "run" / "corral", tmp / "data", log_path=tmp / "daemon.log", env=env
    )
    try:
        daemon.start()
        yield daemon
    finally:
        try:
            daemon.stop(timeout=20.0)
        finally:
            daemon.kill()
            problems.extend(log_problems(daemon.log_tail(limit=1_000_000)))
            if ctx.keep:
                ctx.log(f"  kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def start_mock(client: Client, project: str, prompt: str = "bench", **config: Any) -> str:
    """``agent.start`` of a mock session with ``delayMs: 0``; returns its sessionId."""
    cfg: dict[str, Any] = {"delayMs": 0}
    cfg.update(config)
    result = client.call(
        "agent.start",
        {"projectId": project, "provider": "mock", "prompt": prompt, "providerConfig": cfg},
    )
    return str(result["sessionId"])


def load_all(client: Client, session_id: str, max_pages: int = 1000) -> list[dict[str, Any]]:
    """Every stored message of a session (pages of 5000)."""
    out: list[dict[str, Any]] = []
    after = 0
    for _ in range(max_pages):
        page = client.call(
            "session.messages.load", {"sessionId": session_id, "afterSeq": after, "limit": 5000}
        )
        out.extend(page["messages"])
        if not page["hasMore"] or not page["messages"]:
            break
        after = out[-1]["seqId"]
    return out


def wait_session_status(
    client: Client, project: str, timeout: float, statuses: tuple[str, ...] = TERMINAL
) -> dict[str, Any]:
    """Poll ``session.get`` until the project's session is in ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        session = client.call("session.get", {"projectId": project})["session"]
        if session is not None and session["status"] in statuses:
            return dict(session)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"session of {project} not in {statuses} after {timeout}s")
        time.sleep(0.05)


@dataclass
class Collected:
    """What a subscriber saw of some sessions until they all ended."""

    seqs: dict[str, list[int]] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    message_events: int = 0
    status: dict[str, str] = field(default_factory=dict)
    polled: int = 0  # terminal statuses learnt by polling (their event was lost)
    ended_at: float = math.nan  # perf_counter when the last session ended
    timed_out: bool = False


StatusPoll = Callable[[set[str]], dict[str, str]]


def collect(
    sub: Subscriber, sessions: set[str], timeout: float, poll: StatusPoll | None = None
) -> Collected:
    """Receive events until every session in ``sessions`` reports done/error.

    Latency of a message = subscriber receive wall time - its ``timestamp``
    (ms, stamped by the daemon at conversion, truncated: up to +1 ms bias).
    Once the subscriber has seen an eseq gap (a status event may be among the
    lost ones), ``poll`` is asked every second which sessions have ended.
    """
    out = Collected(seqs={sid: [] for sid in sessions})
    deadline = time.monotonic() + timeout
    last_poll = time.monotonic()
    while len(out.status) < len(sessions):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            out.timed_out = True
            break
        if poll is not None and sub.gaps and time.monotonic() - last_poll >= 1.0:
            last_poll = time.monotonic()
            for sid, status in poll(sessions - set(out.status)).items():
                out.status[sid] = status
                out.polled += 1
                out.ended_at = time.perf_counter()
            continue
        got = sub.recv(min(0.5, remaining))
        if got is None:
            continue
        now_ms = time.time() * 1000.0
        _topic, frame = got
        data = frame.get("data") or {}
        key = str(data.get("sessionId"))
        if key not in sessions:
            continue
        event = frame.get("event")
        if event == "agent.message":
            out.message_events += 1
            for msg in data.get("messages", []):
                out.seqs[key].append(int(msg["seqId"]))
                out.latencies_ms.append(now_ms - float(msg["timestamp"]))
        elif event == "agent.status" and data.get("status") in TERMINAL and key not in out.status:
            out.status[key] = str(data["status"])
            out.ended_at = time.perf_counter()
    return out


def status_poll(client: Client, projects: dict[str, str]) -> StatusPoll:
    """A :data:`StatusPoll` by ``session.get`` (``projects``: sessionId -> projectId)."""

    def poll(pending: set[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for sid in pending:
            session = client.call("session.get", {"projectId": projects[sid]})["session"]
            if session and session["sessionId"] == sid and session["status"] in TERMINAL:
                out[sid] = str(session["status"])
        return out

    return poll


def daemon_elapsed(client: Client, projects: Iterable[str], t0_wall: float) -> float:
    """Seconds from ``t0_wall`` to the last ``updatedAt`` (daemon clock, ms) of the
    projects' sessions: when the daemon committed their final state."""
    last = 0
    for project in projects:
        session = client.call("session.get", {"projectId": project})["session"]
        if session is not None:
            last = max(last, int(session["updatedAt"]))
    return last / 1000.0 - t0_wall if last else math.nan


def seq_problems(seqs: list[int]) -> tuple[int, int]:
    """(missing, duplicate) seqIds in what a subscriber received, against 1..max."""
    if not seqs:
        return 0, 0
    unique = set(seqs)
    return max(seqs) - len(unique), len(seqs) - len(unique)


def rate(count: int, seconds: float) -> float:
    """``count / seconds``; NaN when the time is unknown or not positive."""
    return count / seconds if seconds > 0 else math.nan


def stored_ok(messages: list[dict[str, Any]]) -> bool:
    return [m["seqId"] for m in messages] == list(range(1, len(messages) + 1))


# ----------------------------------------------------------------- scenarios


def scenario_flood(ctx: Context) -> list[Row]:
    """One mock session printing N texts as fast as it can."""
    n = ctx.sizes.flood
    problems: list[str] = []
    rows: list[Row] = []
    with (
        bench_daemon(ctx, "flood", problems) as daemon,
        daemon.client(timeout=30.0) as client,
        Subscriber(daemon.events_url) as sub,
    ):
        sub.wait_connected(client, timeout=5.0)
        t0, t0_wall = time.perf_counter(), time.time()
        sid = start_mock(client, "flood", flood=n, textBytes=200)
        got = collect(sub, {sid}, ctx.sizes.wait_s, status_poll(client, {sid: "flood"}))
        seen = got.ended_at - t0
        committed = daemon_elapsed(client, ["flood"], t0_wall)
        stored = load_all(client, sid)
        received = got.seqs[sid]
        missing, dups = seq_problems(received)
        total = len(stored)
        status = got.status.get(sid, "TIMEOUT") + (" (polled)" if got.polled else "")
        rows += [
            Row(
                "flood",
                "messages stored",
                total,
                "msgs",
                f"flood={n} + prompt/init/turn; seqIds 1..n gapless: {stored_ok(stored)}",
            ),
            Row(
                "flood",
                "start -> final commit",
                committed,
                "s",
                f"daemon clock (session updatedAt); status={status}",
            ),
            Row(
                "flood",
                "throughput",
                rate(total, committed),
                "msgs/s",
                f"committed + published; {rate(total, seen):,.0f}/s up to the done event"
                " at the subscriber",
            ),
            Row(
                "flood",
                "msgs per event",
                len(received) / max(1, got.message_events),
                "msgs",
                f"{got.message_events} agent.message events received",
            ),
            *latency_rows(
                "flood",
                "commit->receive",
                got.latencies_ms,
                1.0,
                "ms",
                'message timestamp (conversion) -> "" subscriber',
            ),
            Row(
                "flood",
                "eseq gaps",
                sub.gaps,
                "gaps",
                f"{sub.missed} events missed (PUB high-water mark); "
                f"{missing} seqIds not received, {dups} duplicated",
            ),
        ]
        if total < n:
            rows.append(Row("flood", "MISSING MESSAGES", n - total, "msgs", "stored < flood"))
    return rows + problem_rows("flood", problems)


def scenario_parallel(ctx: Context) -> list[Row]:
    """K projects, each flooding M texts, all at once.

    Two subscribers: one on everything (``""``, counts eseq gaps) in this thread,
    and one on the first project only, in its own thread, so that the latency it
    measures is the daemon's rather than the backlog of an overloaded subscriber.
    """
    k, m = ctx.sizes.parallel_k, ctx.sizes.parallel_m
    problems: list[str] = []
    rows: list[Row] = []
    with (
        bench_daemon(ctx, "parallel", problems) as daemon,
        daemon.client(timeout=30.0) as client,
        Subscriber(daemon.events_url) as sub,
    ):
        sampler = ProjectSampler(daemon.events_url, "par0", ctx.sizes.wait_s)
        sampler.start()
        sub.wait_connected(client, timeout=5.0)
        sampler.ready.wait(10.0)
        t0, t0_wall = time.perf_counter(), time.time()
        projects: dict[str, str] = {}
        for i in range(k):
            sid = start_mock(client, f"par{i}", flood=m, textBytes=200)
            projects[sid] = f"par{i}"
            if i == 0:
                sampler.session_id = sid
                sampler.go.set()
        starts_done = time.perf_counter() - t0
        got = collect(sub, set(projects), ctx.sizes.wait_s, status_poll(client, projects))
        seen = got.ended_at - t0
        committed = daemon_elapsed(client, projects.values(), t0_wall)
        sampler.join(ctx.sizes.wait_s)
        sample = sampler.result
        total = 0
        bad = 0
        missing = dups = 0
        for sid in projects:
            stored = load_all(client, sid)
            total += len(stored)
            bad += 0 if stored_ok(stored) and len(stored) >= m else 1
            miss, dup = seq_problems(got.seqs[sid])
            missing += miss
            dups += dup
        done = sum(1 for s in got.status.values() if s == "done")
        received = sum(len(s) for s in got.seqs.values())
        rows += [
            Row(
                "parallel",
                "sessions",
                k,
                "sessions",
                f"{m} flood texts each; {done}/{k} done"
                + (f" ({got.polled} learnt by polling)" if got.polled else "")
                + f"; the {k} agent.start calls took {starts_done:.2f} s",
            ),
            Row(
                "parallel",
                "messages stored",
                total,
                "msgs",
                "all sessions gapless" if bad == 0 else f"{bad} sessions incomplete/gappy",
            ),
            Row(
                "parallel",
                "start -> final commit",
                committed,
                "s",
                "daemon clock (last session updatedAt)",
            ),
            Row(
                "parallel",
                "aggregate throughput",
                rate(total, committed),
                "msgs/s",
                f"committed + published; {rate(total, seen):,.0f}/s up to the last done"
                " seen by the subscriber",
            ),
            *latency_rows(
                "parallel",
                "commit->receive (1 project)",
                sample.latencies_ms if sample else [],
                1.0,
                "ms",
                "subscriber on project/par0/ only",
            ),
            *latency_rows(
                "parallel",
                "commit->receive (all)",
                got.latencies_ms,
                1.0,
                "ms",
                f'"" subscriber; {received} of {total} messages received',
            ),
            Row(
                "parallel",
                "eseq gaps",
                sub.gaps,
                "gaps",
                f"{sub.missed} events missed (PUB high-water mark); {missing} seqIds not"
                f" received, {dups} duplicated",
            ),
        ]
    return rows + problem_rows("parallel", problems)


class ProjectSampler(threading.Thread):
    """Collects one project's events on its own thread (and its own SUB socket)."""

    def __init__(self, events_url: str, project: str, timeout: float) -> None:
        super().__init__(name=f"sampler-{project}", daemon=True)
        self.events_url = events_url
        self.project = project
        self.timeout = timeout
        self.ready = threading.Event()
        self.go = threading.Event()
        self.session_id = ""
        self.result: Collected | None = None

    def run(self) -> None:
        with Subscriber(self.events_url, (f"project/{self.project}/",)) as sub:
            try:
                sub.wait_connected(None, timeout=5.0)
            finally:
                self.ready.set()
            if self.go.wait(self.timeout) and self.session_id:
                self.result = collect(sub, {self.session_id}, self.timeout)


def timed_calls(
    client: Client, method: str, params: dict[str, Any] | None, n: int, budget_s: float
) -> list[float]:
    """Round-trip times (seconds) of up to ``n`` sequential calls within ``budget_s``."""
    out: list[float] = []
    deadline = time.monotonic() + budget_s
    for _ in range(n):
        t = time.perf_counter()
        client.call(method, params)
        out.append(time.perf_counter() - t)
        if time.monotonic() >= deadline:
            break
    return out


ROUTER_POLL_S = 0.25
"""The router's poll timeout: a reply that missed its wake-up leaves at the next poll."""


def poll_stalls(samples_s: list[float]) -> str:
    """A note when many round-trips (in seconds) sit on the router's poll timeout."""
    if not samples_s:
        return ""
    stalled = sum(1 for v in samples_s if ROUTER_POLL_S - 0.01 <= v <= ROUTER_POLL_S + 0.05)
    if stalled < max(2, len(samples_s) // 10):
        return ""
    share = 100.0 * stalled / len(samples_s)
    return (
        f"{share:.0f}% took ≈{ROUTER_POLL_S * 1000:.0f} ms = the router's poll timeout"
        " (reply waited for the next poll: missed outbox wake-up?)"
    )


def latency_rows(
    scenario: str,
    metric: str,
    samples: list[float],
    scale: float,
    unit: str,
    notes: str = "",
    *,
    rpc: bool = False,
) -> list[Row]:
    """p50 and p99 rows; ``rpc``: samples are round-trips in seconds (checked for stalls)."""
    stall = poll_stalls(samples) if rpc else ""
    notes = "; ".join(x for x in (notes, stall) if x)
    extra = f"n={len(samples)}" + (f"; {notes}" if notes else "")
    return [
        Row(scenario, f"{metric} p50", percentile(samples, 50) * scale, unit, extra),
        Row(scenario, f"{metric} p99", percentile(samples, 99) * scale, unit, ""),
    ]


def scenario_ping(ctx: Context) -> list[Row]:
    """Sequential RPC round-trips from one DEALER client on an idle daemon."""
    n = ctx.sizes.rpc_n
    problems: list[str] = []
    rows: list[Row] = []
    with bench_daemon(ctx, "ping", problems) as daemon, daemon.client(timeout=30.0) as client:
        sid = start_mock(client, "seed", flood=600)
        wait_session_status(client, "seed", ctx.sizes.wait_s)
        budget = ctx.sizes.budget_s
        load_params = {"sessionId": sid, "afterSeq": 0, "limit": 500}
        timed_calls(client, "daemon.ping", None, 50, budget)  # warm-up
        ping = timed_calls(client, "daemon.ping", None, n, budget)
        get = timed_calls(client, "session.get", {"projectId": "seed"}, n, budget)
        size = len(client.call("session.messages.load", load_params)["messages"])
        load = timed_calls(client, "session.messages.load", load_params, ctx.sizes.load_n, budget)
        rows += latency_rows(
            "rpc", "daemon.ping", ping, 1e6, "µs", "answered by the router", rpc=True
        )
        rows += latency_rows(
            "rpc", "session.get", get, 1e6, "µs", "via the registry actor", rpc=True
        )
        rows += latency_rows(
            "rpc", f"messages.load({size})", load, 1e3, "ms", "via a reader actor", rpc=True
        )
    return rows + problem_rows("rpc", problems)


def scenario_rw(ctx: Context) -> list[Row]:
    """session.messages.load of a finished session, idle and while another floods."""
    n = ctx.sizes.rw_flood
    problems: list[str] = []
    rows: list[Row] = []
    with (
        bench_daemon(ctx, "rw", problems) as daemon,
        daemon.client(timeout=30.0) as client,
        Subscriber(daemon.events_url, ("project/writer/agent.status",)) as sub,
    ):
        sub.wait_connected(client, timeout=5.0)
        sid = start_mock(client, "seed", flood=600)
        wait_session_status(client, "seed", ctx.sizes.wait_s)
        params = {"sessionId": sid, "afterSeq": 0, "limit": 500}
        budget = ctx.sizes.budget_s
        timed_calls(client, "session.messages.load", params, 10, budget)  # warm-up
        idle = timed_calls(client, "session.messages.load", params, ctx.sizes.load_n, budget)
        idle_get = timed_calls(client, "session.get", {"projectId": "seed"}, 200, budget)

        writer = start_mock(client, "writer", flood=n, textBytes=200)
        t0 = time.perf_counter()
        busy: list[float] = []
        busy_get: list[float] = []
        busy_ping: list[float] = []
        ended = False
        deadline = time.monotonic() + ctx.sizes.wait_s
        while len(busy) < ctx.sizes.rw_max_reads and time.monotonic() < deadline:
            busy += timed_calls(client, "session.messages.load", params, 1, budget)
            busy_get += timed_calls(client, "session.get", {"projectId": "seed"}, 1, budget)
            busy_ping += timed_calls(client, "daemon.ping", None, 1, budget)
            got = sub.recv(0)
            if (
                got is not None
                and got[1]["data"].get("sessionId") == writer
                and (got[1]["data"].get("status") in TERMINAL)
            ):
                ended = True
                break
        window = time.perf_counter() - t0
        if not ended:
            wait_session_status(client, "writer", ctx.sizes.wait_s)
        stored = client.call("session.get", {"projectId": "writer"})["session"]["lastSeqId"]
        note = (
            f"flood of {n} ended during the reads"
            if ended
            else f"read cap reached before the flood of {n} ended"
        )
        rows += latency_rows("read/write", "load(500) idle", idle, 1e3, "ms", rpc=True)
        rows += latency_rows(
            "read/write",
            "load(500) during flood",
            busy,
            1e3,
            "ms",
            f"{window:.1f} s window; {note}",
            rpc=True,
        )
        rows += latency_rows("read/write", "session.get idle", idle_get, 1e3, "ms", rpc=True)
        rows += latency_rows(
            "read/write", "session.get during flood", busy_get, 1e3, "ms", rpc=True
        )
        rows += latency_rows(
            "read/write", "daemon.ping during flood", busy_ping, 1e3, "ms", rpc=True
        )
        rows.append(Row("read/write", "writer messages stored", stored, "msgs", f"flood={n}"))
    return rows + problem_rows("read/write", problems)


def scenario_start(ctx: Context) -> list[Row]:
    """agent.start -> reply, -> first agent.message, -> first message of the mock process."""
    n = ctx.sizes.start_n
    problems: list[str] = []
    rows: list[Row] = []
    reply: list[float] = []
    first: list[float] = []
    first_agent: list[float] = []
    with (
        bench_daemon(ctx, "start", problems) as daemon,
        daemon.client(timeout=30.0) as client,
        Subscriber(daemon.events_url, ("project/",)) as sub,
    ):
        sub.wait_connected(client, timeout=5.0)
        for i in range(n):
            project = f"st{i}"
            t0 = time.perf_counter()
            sid = start_mock(client, project, toolCalls=0)
            reply.append(time.perf_counter() - t0)
            deadline = time.monotonic() + 30.0
            seen_first = seen_agent = done = False
            while not done and time.monotonic() < deadline:
                got = sub.recv(max(0.0, min(0.5, deadline - time.monotonic())))
                if got is None:
                    continue
                now = time.perf_counter() - t0
                data = got[1].get("data") or {}
                if data.get("sessionId") != sid:
                    continue
                if got[1].get("event") == "agent.message":
                    if not seen_first:
                        seen_first = True
                        first.append(now)
                    if not seen_agent and any(
                        msg.get("role") != "user" for msg in data.get("messages", [])
                    ):
                        seen_agent = True
                        first_agent.append(now)
                elif got[1].get("event") == "agent.status" and data.get("status") in TERMINAL:
                    done = True
    rows += latency_rows("start", "agent.start -> reply", reply, 1e3, "ms", rpc=True)
    rows += latency_rows(
        "start", "-> first agent.message", first, 1e3, "ms", "the prompt echo (seqId 1)"
    )
    rows += latency_rows(
        "start",
        "-> first mock message",
        first_agent,
        1e3,
        "ms",
        "provider process spawned and printed init",
    )
    return rows + problem_rows("start", problems)


def problem_rows(scenario: str, problems: list[str]) -> list[Row]:
    if not problems:
        return []
    first = problems[0]
    return [
        Row(
            scenario,
            "daemon log warnings/errors",
            len(problems),
            "lines",
            first[:160] + (" …" if len(first) > 160 else ""),
        )
    ]


RUNNERS: dict[str, Callable[[Context], list[Row]]] = {
    "flood": scenario_flood,
    "parallel": scenario_parallel,
    "ping": scenario_ping,
    "rw": scenario_rw,
    "start": scenario_start,
}


# ----------------------------------------------------------------- output


def fmt(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| scenario | metric | value | unit | notes |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        notes = r.notes.replace("|", "\\|")
        lines.append(f"| {r.scenario} | {r.metric} | {fmt(r.value)} | {r.unit} | {notes} |")
    return "\n".join(lines)


def print_rich(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("scenario")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("notes", overflow="fold")
    for r in rows:
        table.add_row(r.scenario, r.metric, fmt(r.value), r.unit, r.notes)
    Console(width=max(120, shutil.get_terminal_size((120, 40)).columns)).print(table)


def _is_nan(value: float | int | str) -> bool:
    return isinstance(value, float) and math.isnan(value)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run (default all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a plain markdown table")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (daemon logs)")
    args = parser.parse_args(argv)

    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SCENARIOS)
    unknown = [s for s in chosen if s not in RUNNERS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = Context(QUICK if args.quick else FULL, keep=args.keep, log=log)
    rows: list[Row] = []
    failed = 0
    for name in chosen:
        log(f"running {name} ...")
        t = time.perf_counter()
        try:
            rows += RUNNERS[name](ctx)
        except Exception as exc:  # one broken scenario must not hide the others
            failed += 1
            rows.append(Row(name, "FAILED", type(exc).__name__, "", str(exc)[:200]))
        log(f"  {name}: {time.perf_counter() - t:.1f} s")

    info = machine()
    title = (
        f"corral bench ({'quick' if args.quick else 'full'}; {info['cpus']} CPUs, "
        f"Python {info['python']})"
    )
    if args.markdown:
        print(f"{title}\n\n{markdown_table(rows)}")
    else:
        print_rich(rows, title)
    if args.json:
        payload = {
            "quick": args.quick,
            "machine": info,
            "sizes": asdict(ctx.sizes),
            "rows": [{**asdict(r), "value": None if _is_nan(r.value) else r.value} for r in rows],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
