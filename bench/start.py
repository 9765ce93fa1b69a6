"""start: ``agent.start`` of a mock session -> its first ``agent.message`` event
received, and -> the event carrying the mock's own first message (its init),
beside spawning the same mock program directly, writing the same prompt and
reading its first line. Starts are one after the other, each waited for until
its turn ends (corral) or the process exits (baseline).
``python -m bench.start [--quick]``.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    HEARTBEAT,
    TERMINAL,
    Context,
    LeanSub,
    Row,
    bench_daemon,
    median,
    mock_argv,
    mock_request,
    order,
    prompt_line,
    standalone,
)
from corral.protocol.client import Client

CONFIG: dict[str, Any] = {"toolCalls": 0, "delayMs": 0}


@dataclass(frozen=True)
class Sizes:
    starts: int  # per run and side


def sizes(ctx: Context) -> Sizes:
    result: Sizes = ctx.pick(Sizes(starts=10), Sizes(starts=3))
    return result


def corral_start(client: Client, sub: LeanSub, project: str) -> tuple[float, float]:
    """(ms to the first agent.message, ms to the one with the mock's first message)."""
    t0 = time.perf_counter()
    sid = client.call("agent.start", mock_request(project, "start", CONFIG))["sessionId"]
    first = mock = float("nan")
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        got = sub.recv(deadline - time.monotonic())
        if got is None:
            break
        now = (time.perf_counter() - t0) * 1e3
        frame = got[1]
        data = frame.get("data") or {}
        if data.get("sessionId") != sid:
            continue
        if frame.get("event") == "agent.message":
            if first != first:  # NaN: not seen yet
                first = now
            if mock != mock and any(m.get("role") != "user" for m in data["messages"]):
                mock = now
        elif frame.get("event") == "agent.status" and data.get("status") in TERMINAL:
            break
    if mock != mock:
        raise TimeoutError(f"no message of the mock of {project} within 60 s")
    return first, mock


def direct_start(tmp: Path) -> float:
    """ms from spawning the mock to reading its first line."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        mock_argv({"delayMs": 0, **CONFIG}, tmp / "state", tmp, str(uuid.uuid4())),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
        start_new_session=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(prompt_line("start"))
        proc.stdin.flush()
        line = proc.stdout.readline()
        elapsed = (time.perf_counter() - t0) * 1e3
        if not line:
            raise RuntimeError(f"the mock printed nothing (exit {proc.poll()})")
        proc.stdin.close()
        proc.stdout.read()
        proc.wait(30)
        return elapsed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def run(ctx: Context) -> list[Row]:
    size = sizes(ctx)
    first: list[float] = []
    mock: list[float] = []
    base: list[float] = []
    with (
        bench_daemon(ctx, "start", {"cleanup_grace_ms": "0"}) as daemon,
        daemon.client() as client,
        LeanSub(daemon.events_url, ["project/", HEARTBEAT]) as sub,
    ):
        sub.wait_for(HEARTBEAT, 5.0)
        direct_start(daemon.tmp)  # warm the file cache for both
        corral_start(client, sub, "warm")
        for i in range(ctx.runs):
            for side in order(i):
                if side == "corral":
                    got = [corral_start(client, sub, f"st{i}-{k}") for k in range(size.starts)]
                    first.append(median([g[0] for g in got]))
                    mock.append(median([g[1] for g in got]))
                else:
                    base.append(median([direct_start(daemon.tmp) for _ in range(size.starts)]))
            ctx.log(f"  start run {i + 1}/{ctx.runs}")
    note = (
        f"median of {size.starts} starts per run; baseline: spawn the mock, write the prompt, "
        "read its first line"
    )
    return [
        Row("start", "agent.start → first agent.message received", "ms", first, base, note=note),
        Row("start", "agent.start → the mock's first message received", "ms", mock, base),
    ]


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
