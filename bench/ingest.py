"""ingest: 10 mock sessions (quick: 4) flooding, end to end (the first
agent.start -> the last message received by a SUB), and emit->receive latency
at a fixed ~1k msg/s (each session printing a line every 10 ms), beside a bare
pipeline (:mod:`bench.pipeline`: the same mock lines -> a reader thread -> apsw
group commit -> PUB -> SUB).

Emit times come from the mock processes themselves (``bench/mockhooks``: its
``sitecustomize`` is on their PYTHONPATH, which corral's mocks inherit from the
daemon's environment), matched to the received messages by their text. Each
kind of run has one daemon for all its runs (new projects each time, cleanup
grace 0 so that processes exit after their turn); each baseline run is a new
pipeline process with a new database. ``python -m bench.ingest [--quick]``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.clients import child_env
from bench.common import (
    HEARTBEAT,
    TERMINAL,
    BenchDaemon,
    Context,
    LeanSub,
    Row,
    bench_daemon,
    hooks_env,
    median,
    new_tmp,
    order,
    percentile,
    ratio_at_least,
    standalone,
    start_mock,
)

TEXT_BYTES = 200
RATE_DELAY_MS = 10  # a line every 10 ms in each of 10 sessions: ~1k msg/s (full run)
INGEST_GOAL = ratio_at_least(0.70)


@dataclass(frozen=True)
class Sizes:
    sessions: int
    flood: int  # texts per session in the throughput runs
    steps: int  # turn steps per session in the latency runs (2 lines each)
    timeout_s: float


def sizes(ctx: Context) -> Sizes:
    result: Sizes = ctx.pick(
        Sizes(sessions=10, flood=10_000, steps=250, timeout_s=300.0),
        Sizes(sessions=4, flood=300, steps=15, timeout_s=60.0),
    )
    return result


@dataclass
class Received:
    messages: int = 0
    first_ns: int = 0
    last_ns: int = 0
    stamps: list[tuple[int, int]] = field(default_factory=list)  # (crc32 of text, recv ns)
    timed_out: bool = False


def collect(
    sub: LeanSub, finished: Callable[[str, dict[str, Any]], bool], timeout: float, stamps: bool
) -> Received:
    """Count the messages of ``agent.message`` events until ``finished``."""
    out = Received()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            out.timed_out = True
            return out
        got = sub.recv(min(0.5, remaining))
        if got is None:
            continue
        topic, frame, now = got
        if frame.get("event") == "agent.message":
            msgs = frame["data"].get("messages", [])
            out.messages += len(msgs)
            out.first_ns = out.first_ns or now
            out.last_ns = now
            if stamps:
                for m in msgs:
                    if m.get("role") in ("assistant", "thinking"):
                        out.stamps.append((zlib.crc32(m["content"].encode()), now))
        if finished(topic, frame):
            return out


def emit_times(directory: Path) -> dict[int, int]:
    out: dict[int, int] = {}
    for log in directory.glob("*.log"):
        for line in log.read_text().splitlines():
            ns, crc = line.split()
            out[int(crc)] = int(ns)
    return out


@dataclass
class Outcome:
    rate: float  # messages per second, t0 -> last message received
    messages: int
    latencies_ms: list[float]
    unmatched: int
    emitted_rate: float  # for the latency runs: messages emitted per second


def outcome(t0_ns: int, got: Received, emit_dir: Path | None) -> Outcome:
    if got.timed_out:
        raise TimeoutError(f"timed out after {got.messages} messages")
    span = (got.last_ns - t0_ns) / 1e9
    lat: list[float] = []
    unmatched = 0
    emitted_rate = float("nan")
    if emit_dir is not None:
        emitted = emit_times(emit_dir)
        sent: list[int] = []
        for crc, recv in got.stamps:
            if crc in emitted:
                lat.append((recv - emitted[crc]) / 1e6)
                sent.append(emitted[crc])
            else:
                unmatched += 1
        if len(sent) > 1 and max(sent) > min(sent):
            emitted_rate = (len(sent) - 1) / ((max(sent) - min(sent)) / 1e9)
    return Outcome(got.messages / span, got.messages, lat, unmatched, emitted_rate)


def flood_config(size: Sizes) -> dict[str, Any]:
    return {"flood": size.flood, "toolCalls": 0, "textBytes": TEXT_BYTES, "delayMs": 0}


def paced_config(size: Sizes) -> dict[str, Any]:
    return {"turns": size.steps, "toolCalls": 0, "textBytes": TEXT_BYTES, "delayMs": RATE_DELAY_MS}


class CorralSide:
    """A daemon started for the whole benchmark, with its client and subscriber."""

    def __init__(self, daemon: BenchDaemon) -> None:
        self.client = daemon.client()
        self.sub = LeanSub(daemon.events_url, ["project/", HEARTBEAT])
        self.sub.wait_for(HEARTBEAT, 5.0)

    def run(
        self, size: Sizes, config: dict[str, Any], label: str, emit_dir: Path | None
    ) -> Outcome:
        """One run: new projects; done when every session's turn has ended."""
        ended: set[str] = set()
        sids: set[str] = set()

        def finished(topic: str, frame: dict[str, Any]) -> bool:
            data = frame.get("data") or {}
            if frame.get("event") == "agent.status" and data.get("status") in TERMINAL:
                ended.add(str(data.get("sessionId")))
            return len(sids) == size.sessions and sids <= ended

        t0 = time.time_ns()
        for i in range(size.sessions):
            prompt = f"ingest {label} session {i}"
            sids.add(start_mock(self.client, f"{label}-{i}", prompt, **config))
        got = collect(self.sub, finished, size.timeout_s, emit_dir is not None)
        return outcome(t0, got, emit_dir)

    def close(self) -> None:
        self.sub.close()
        self.client.close()


def pipeline_ended(topic: str, _frame: dict[str, Any]) -> bool:
    return topic == "pipeline/end"


def run_baseline(size: Sizes, config: dict[str, Any], label: str, emit_dir: Path | None) -> Outcome:
    """One run of the bare pipeline, in a new process with a new database."""
    tmp = new_tmp("pipe")
    pub = f"ipc://{tmp}/pub.sock"
    argv = [sys.executable, "-m", "bench.pipeline", "--db", str(tmp / "pipe.db"), "--pub", pub]
    argv += ["--sessions", str(size.sessions), "--config", orjson.dumps(config).decode()]
    argv += ["--prompt", f"ingest {label} session", "--tmp", str(tmp)]
    if emit_dir is not None:
        argv += ["--emit-log", str(emit_dir)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env())
    try:
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the pipeline did not start (exit {proc.poll()})")
        with LeanSub(pub, [""]) as sub:
            sub.wait_for("pipeline/hello", 5.0)
            t0 = time.time_ns()
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
            got = collect(sub, pipeline_ended, size.timeout_s, emit_dir is not None)
        proc.wait(30)
        return outcome(t0, got, emit_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def both(make: Callable[[], Any]) -> dict[str, Any]:
    return {"corral": make(), "baseline": make()}


@dataclass
class Figures:
    rates: dict[str, list[float]] = field(default_factory=lambda: {"corral": [], "baseline": []})
    counts: dict[str, set[int]] = field(
        default_factory=lambda: {"corral": set(), "baseline": set()}
    )
    p50: dict[str, list[float]] = field(default_factory=lambda: {"corral": [], "baseline": []})
    p99: dict[str, list[float]] = field(default_factory=lambda: {"corral": [], "baseline": []})
    emitted: list[float] = field(default_factory=list)
    unmatched: int = 0


def measure(ctx: Context, size: Sizes, emit_dir: Path) -> Figures:
    out = Figures()
    # Sessions retire at the end of their turn (grace 0): their processes exit.
    settings = {"cleanup_grace_ms": "0"}
    clock = hooks_env(BENCH_EMIT_LOG=str(emit_dir))
    with (
        bench_daemon(ctx, "ingest", settings) as flood_daemon,
        bench_daemon(ctx, "ingestlat", settings, clock) as paced_daemon,
        contextlib.closing(CorralSide(flood_daemon)) as flood_side,
        contextlib.closing(CorralSide(paced_daemon)) as paced_side,
    ):
        for i in range(ctx.runs):
            for side in order(i):
                cfg, label = flood_config(size), f"f{i}"
                got = (
                    flood_side.run(size, cfg, label, None)
                    if side == "corral"
                    else run_baseline(size, cfg, label, None)
                )
                out.rates[side].append(got.rate)
                out.counts[side].add(got.messages)
            for side in order(i):
                cfg, label = paced_config(size), f"p{i}{side[0]}"
                got = (
                    paced_side.run(size, cfg, label, emit_dir)
                    if side == "corral"
                    else run_baseline(size, cfg, label, emit_dir)
                )
                out.p50[side].append(percentile(got.latencies_ms, 50))
                out.p99[side].append(percentile(got.latencies_ms, 99))
                out.emitted.append(got.emitted_rate)
                out.unmatched += got.unmatched
            ctx.log(f"  ingest run {i + 1}/{ctx.runs}")
    return out


def run(ctx: Context) -> list[Row]:
    size = sizes(ctx)
    emit_dir = new_tmp("emit")
    try:
        f = measure(ctx, size, emit_dir)
    finally:
        shutil.rmtree(emit_dir, ignore_errors=True)
    total = size.sessions * size.flood
    rate = 1000 // RATE_DELAY_MS * size.sessions
    same = "same count" if f.counts["corral"] == f.counts["baseline"] else "COUNTS DIFFER"
    return [
        Row(
            "ingest",
            f"messages/s end to end, {size.sessions} sessions flooding",
            "msgs/s",
            f.rates["corral"],
            f.rates["baseline"],
            INGEST_GOAL,
            f"{total:,} flood texts per run; messages received per run: corral "
            f"{sorted(f.counts['corral'])}, baseline {sorted(f.counts['baseline'])} ({same})",
        ),
        Row(
            "ingest",
            f"emit→receive p50 at ~{rate:,} msg/s",
            "ms",
            f.p50["corral"],
            f.p50["baseline"],
            note=f"{size.sessions} sessions x {2 * size.steps + 1} texts, one every "
            f"{RATE_DELAY_MS} ms; "
            f"emitted at {median(f.emitted):,.0f} msg/s (median of the runs, from the first "
            f"emit to the last, process starts included); {f.unmatched} texts received "
            "without an emit time",
        ),
        Row(
            "ingest",
            f"emit→receive p99 at ~{rate:,} msg/s",
            "ms",
            f.p99["corral"],
            f.p99["baseline"],
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
