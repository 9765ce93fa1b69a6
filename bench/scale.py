"""scale: a daemon holding N live, idle mock sessions (1,000; quick 60) beside
the same daemon with 0 sessions: RSS, threads, descriptors (/proc/PID/status,
/proc/PID/task, /proc/PID/fd), idle CPU, ping p99; agent.start times (the last
quarter of the N starts against the first); shutdown time (against a daemon
with 0 sessions) and whether the log says a provider "outlived the stop
ladder"; and the per-live-session figures.

A live idle session is a mock whose turn ended (``toolCalls: 0``) and which is
kept, with its process, by a cleanup grace of a day (an idle mock wakes once a
second; stdin wakes it at once). Each daemon lifetime gives
one start and one shutdown figure and ``samples`` readings of the idle state.
``python -m bench.scale [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from bench.clients import LeanClient, corral_request
from bench.common import (
    TERMINAL,
    Context,
    LeanSub,
    Row,
    alive,
    apply_settings,
    children,
    cpu_seconds,
    fd_count,
    make_daemon,
    median,
    mock_request,
    new_tmp,
    percentile,
    proc_status,
    ratio_at_most,
    standalone,
    task_count,
    value_at_most,
)
from corral.supervisor.background import DaemonProcess

LADDER = "outlived the stop ladder"
MOCK = "corral.supervisor.providers.mock"
SETTINGS = {"max_live_sessions": "10000", "cleanup_grace_ms": "86400000"}
CONFIG = {"toolCalls": 0}  # one short turn, then idle


@dataclass(frozen=True)
class Sizes:
    sessions: int
    lifetimes: int  # daemons started with N sessions (start and shutdown figures)
    samples: int  # readings of the idle state per lifetime
    idle_s: float  # length of one idle CPU reading
    pings: int
    start_budget_s: float  # starting stops after this long (the figures then say so)


def sizes(ctx: Context) -> Sizes:
    result: Sizes = ctx.pick(
        Sizes(sessions=1_000, lifetimes=1, samples=3, idle_s=5.0, pings=500, start_budget_s=900),
        Sizes(sessions=60, lifetimes=1, samples=3, idle_s=1.0, pings=50, start_budget_s=120),
    )
    return result


def state(daemon: DaemonProcess, size: Sizes) -> dict[str, float]:
    """One reading: memory, threads, descriptors, CPU over ``idle_s``, ping."""
    pid = daemon.pid
    status = proc_status(pid)
    kids = children(pid)
    cpu0, kids0, t0 = cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.monotonic()
    time.sleep(size.idle_s)
    cpu1, kids1, t1 = cpu_seconds(pid), sum(cpu_seconds(k) for k in kids), time.monotonic()
    client = LeanClient(daemon.rpc_url, "corral", corral_request("daemon.ping", None))
    try:
        client.check()
        lat = client.sequential(size.pings, 30.0)[2]
    finally:
        client.close()
    return {
        "rss": status["rss_kib"] / 1024,
        "threads": float(task_count(pid)),
        "fds": float(fd_count(pid)),
        "cpu": 100 * (cpu1 - cpu0) / (t1 - t0),
        "kids_cpu": 100 * (kids1 - kids0) / (t1 - t0),
        "ping99": percentile(lat, 99) * 1e3,
        "rss_kib": float(status["rss_kib"]),
    }


def ended_turns(sub: LeanSub, ended: set[str], timeout: float) -> None:
    """Receive events for up to ``timeout`` s; add the sessions whose turn ended."""
    deadline = time.monotonic() + timeout
    while (got := sub.recv(max(0.0, deadline - time.monotonic()))) is not None:
        data = got[1].get("data") or {}
        if got[1].get("event") == "agent.status" and data.get("status") in TERMINAL:
            ended.add(str(data.get("sessionId")))
        if time.monotonic() >= deadline:
            return


def start_all(daemon: DaemonProcess, size: Sizes, ctx: Context) -> tuple[list[float], str]:
    """Start up to N sessions one after the other, within ``start_budget_s``;
    (agent.start round-trips in ms, why it stopped early or ""). Returns once
    every started session's turn has ended."""
    out: list[float] = []
    projects: dict[str, str] = {}
    ended: set[str] = set()
    stopped = ""
    budget = time.monotonic() + size.start_budget_s
    with (
        daemon.client(timeout=120.0) as client,
        LeanSub(daemon.events_url, ["project/", "daemon/daemon.heartbeat"]) as sub,
    ):
        sub.wait_for("daemon/daemon.heartbeat", 5.0)
        for i in range(size.sessions):
            if time.monotonic() > budget:
                stopped = f"starts stopped at {i} after {size.start_budget_s:g} s"
                break
            t = time.perf_counter()
            try:
                result = client.call("agent.start", mock_request(f"s{i}", "idle", CONFIG))
            except Exception as exc:
                stopped = f"start {i + 1} failed: {type(exc).__name__}: {exc}"[:200]
                break
            out.append((time.perf_counter() - t) * 1e3)
            projects[result["sessionId"]] = f"s{i}"
            ended_turns(sub, ended, 0)
            if (i + 1) % max(1, size.sessions // 4) == 0:
                ctx.log(f"  scale: {i + 1}/{size.sessions} started")
        deadline = time.monotonic() + 60.0 + len(projects) * 0.1
        while not set(projects) <= ended and time.monotonic() < deadline:
            ended_turns(sub, ended, 0.5)
        for sid in set(projects) - ended:  # a status event may have been dropped
            session = client.call("session.get", {"projectId": projects[sid]})["session"]
            if session and session["status"] in TERMINAL:
                ended.add(sid)
        if not set(projects) <= ended:
            missing = len(set(projects) - ended)
            raise TimeoutError(f"{missing} of {len(projects)} sessions did not end their turn")
    return out, stopped


def shutdown(daemon: DaemonProcess) -> float:
    """Seconds from daemon.shutdown to the daemon's exit."""
    assert daemon.proc is not None
    t = time.perf_counter()
    with daemon.client(timeout=10.0) as client:
        client.call("daemon.shutdown")
    daemon.proc.wait(300)
    return time.perf_counter() - t


def kill_leftovers(pids: list[int]) -> int:
    """SIGKILL (by PID) the mock processes still alive after the daemon exited."""
    left = 0
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if alive(pid) and MOCK.encode() in cmdline:
            left += 1
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return left


def empty_shutdown() -> float:
    tmp = new_tmp("scale0")
    daemon = make_daemon(tmp)
    try:
        daemon.start()
        return shutdown(daemon)
    finally:
        daemon.stop(timeout=30.0)
        daemon.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def run(ctx: Context) -> list[Row]:
    size = sizes(ctx)
    n = size.sessions
    stopped: list[str] = []
    took: list[float] = []
    zero: dict[str, list[float]] = {}
    full: dict[str, list[float]] = {}
    per: dict[str, list[float]] = {"threads": [], "fds": [], "rss": []}
    first_q: list[float] = []
    last_q: list[float] = []
    downs: list[float] = []
    downs0: list[float] = []
    ladder = 0
    leftovers = 0
    live: list[int] = []
    for life in range(size.lifetimes):
        downs0.append(empty_shutdown())
        tmp = new_tmp("scale")
        daemon = make_daemon(tmp)
        kids: list[int] = []
        try:
            daemon.start(timeout=60.0)
            with daemon.client() as client:
                apply_settings(client, SETTINGS)
            before = [state(daemon, size) for _ in range(size.samples)]
            t = time.perf_counter()
            starts, why = start_all(daemon, size, ctx)
            took.append(time.perf_counter() - t)
            stopped += [why] if why else []
            n = min(n, len(starts))  # fewer when starting had to stop early
            quarter = max(1, n // 4)
            first_q.append(median(starts[:quarter]))
            last_q.append(median(starts[-quarter:]))
            time.sleep(1.0)
            kids = children(daemon.pid)
            live.append(sum(1 for k in kids if alive(k)))
            after = [state(daemon, size) for _ in range(size.samples)]
            for b, a in zip(before, after, strict=True):
                for key in b:
                    zero.setdefault(key, []).append(b[key])
                    full.setdefault(key, []).append(a[key])
                per["threads"].append((a["threads"] - b["threads"]) / n)
                per["fds"].append((a["fds"] - b["fds"]) / n)
                per["rss"].append((a["rss_kib"] - b["rss_kib"]) / n)
            downs.append(shutdown(daemon))
            ladder += daemon.log_tail(limit=50_000_000).count(LADDER)
        finally:
            daemon.stop(timeout=60.0)
            daemon.kill()
            leftovers += kill_leftovers(kids)
            if ctx.keep:
                ctx.log(f"  kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        ctx.log(f"  scale lifetime {life + 1}/{size.lifetimes}")
    readings = f"{size.samples} readings per daemon x {size.lifetimes} daemon(s)"
    live_note = (
        f"{n:,} sessions, live processes: {'/'.join(map(str, live))}; {readings}; "
        f"starting them took {'/'.join(f'{x:.0f}' for x in took)} s"
        + "".join(f"; {why}" for why in stopped)
    )
    down_note = f"{ladder} '{LADDER}' lines in the log; {leftovers} provider processes left"
    return [
        Row("scale", f"daemon RSS, {n:,} sessions (baseline: 0)", "MiB", full["rss"],
            zero["rss"], note=live_note),
        Row("scale", f"daemon threads, {n:,} sessions (baseline: 0)", "threads",
            full["threads"], zero["threads"]),
        Row("scale", f"daemon fds, {n:,} sessions (baseline: 0)", "fds", full["fds"],
            zero["fds"]),
        Row("scale", f"daemon idle CPU, {n:,} idle sessions (baseline: 0)", "% of a core",
            full["cpu"], zero["cpu"], value_at_most(1.0, "%"),
            f"over {size.idle_s:g} s per reading; the {n:,} mock processes themselves: "
            f"{median(full['kids_cpu']):.1f} % of a core"),
        Row("scale", f"daemon.ping p99, {n:,} sessions (baseline: 0)", "ms", full["ping99"],
            zero["ping99"], note=f"{size.pings} pings per reading"),
        Row("scale", f"agent.start, last {n // 4:,} of {n:,} (baseline: first {n // 4:,})",
            "ms", last_q, first_q, ratio_at_most(2.0), "median round-trip of each quarter"),
        Row("scale", f"shutdown, {n:,} sessions (baseline: 0)", "s", downs, downs0,
            value_at_most(10.0, "s", ", no ladder error"), down_note,
            also_required=ladder == 0),
        Row("scale", "threads per live session", "threads", per["threads"],
            goal=value_at_most(1.1)),
        Row("scale", "descriptors per live session", "fds", per["fds"],
            goal=value_at_most(5)),
        Row("scale", "daemon RSS per live session", "KiB", per["rss"],
            goal=value_at_most(256, "KiB")),
    ]  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
