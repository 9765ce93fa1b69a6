"""What every benchmark shares: the context (quick or full, how many runs), the
rows of the table with their goals, a daemon in a temp dir stopped by PID,
readings from /proc, a lean event subscriber and what starts mock agents."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zmq

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess

REPO = Path(__file__).resolve().parents[1]
"""The repository root (the parent of ``bench/``)."""

MOCK_HOOKS = Path(__file__).resolve().parent / "mockhooks"
"""The ``sitecustomize`` of the mock processes' benchmark hooks (see its doc)."""


def hooks_env(**variables: str) -> dict[str, str]:
    """Environment for a daemon whose mock processes load the benchmark hooks."""
    return {"PYTHONPATH": os.pathsep.join([str(MOCK_HOOKS), str(REPO)]), **variables}


TERMINAL = ("done", "error")
HEARTBEAT = "daemon/daemon.heartbeat"


# ----------------------------------------------------------------- context


@dataclass
class Context:
    """How a benchmark runs: sizes (quick or full), runs per figure, logging."""

    quick: bool = False
    runs: int = 5
    keep: bool = False
    log: Callable[[str], None] = field(default=lambda _msg: None)

    def pick(self, full: Any, quick: Any) -> Any:
        """``quick`` in a quick run, else ``full``."""
        return quick if self.quick else full


def order(run: int) -> tuple[str, str]:
    """Which side goes first in run ``run``: they alternate, so that neither
    always meets the machine a little warmer or busier."""
    return ("corral", "baseline") if run % 2 == 0 else ("baseline", "corral")


# ----------------------------------------------------------------- figures


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    data = sorted(values)
    if not data:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(data)))
    return data[min(rank, len(data)) - 1]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


@dataclass(frozen=True)
class Goal:
    """A goal on a row: ``on`` is ``"ratio"`` (corral / baseline, of the
    medians) or ``"value"`` (the median of corral's figure); ``op`` ``<=`` or ``>=``."""

    text: str
    on: str
    op: str
    limit: float

    def met(self, row: Row) -> bool | None:
        got = row.ratio if self.on == "ratio" else median(row.corral)
        if got is None or math.isnan(got):
            return None
        return got <= self.limit if self.op == "<=" else got >= self.limit


TIMES = "\u00d7"  # the multiplication sign of ratios


def ratio_at_least(limit: float) -> Goal:
    return Goal(f"≥ {limit:.2f}{TIMES}", "ratio", ">=", limit)


def ratio_at_most(limit: float) -> Goal:
    return Goal(f"≤ {limit:g}{TIMES}", "ratio", "<=", limit)


def value_at_most(limit: float, unit: str = "", also: str = "") -> Goal:
    text = f"≤ {limit:g} {unit}".rstrip()
    return Goal(text + also, "value", "<=", limit)


@dataclass
class Row:
    """One line of the table: corral's figure and the baseline's, one value per run."""

    bench: str
    metric: str
    unit: str
    corral: list[float]
    baseline: list[float] | None = None
    goal: Goal | None = None
    note: str = ""
    also_required: bool = True
    """A condition the goal needs beside the number (e.g. no error in the log)."""
    failed: bool = False

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        base = median(self.baseline)
        if math.isnan(base) or base == 0:
            return None
        return median(self.corral) / base

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.failed:
            return None
        ok = self.goal.met(self)
        if ok is None:
            return None
        return ok and self.also_required


def failed_row(bench: str, what: str, exc: BaseException) -> Row:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return Row(bench, what, "", [], note=text[:240], failed=True)


# ----------------------------------------------------------------- table


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    a = abs(value)
    if a >= 100:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_ratio(ratio: float) -> str:
    """Three significant digits, so that a ratio next to its goal reads right."""
    return f"{ratio:.3f}{TIMES}" if ratio < 1 else f"{ratio:.3g}{TIMES}"


def cell(values: Sequence[float] | None) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{fmt(values[0])} (1 run)"
    return f"{fmt(min(values))} / {fmt(median(values))} / {fmt(max(values))}"


HEADER = (
    "benchmark",
    "metric",
    "unit",
    "corral min / median / max",
    "baseline min / median / max",
    "ratio",
    "goal",
    "met",
    "notes",
)


def table(rows: Sequence[Row], quick: bool = False) -> str:
    """The rows as one markdown table (a quick run says so in its first header)."""
    head = (f"{HEADER[0]} (QUICK run: small sizes)" if quick else HEADER[0], *HEADER[1:])
    lines = [
        "| " + " | ".join(head) + " |",
        "|---|---|---|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        ratio = r.ratio
        met = r.met
        cells = (
            r.bench,
            r.metric,
            r.unit,
            "FAILED" if r.failed else cell(r.corral),
            cell(r.baseline),
            "—" if ratio is None else fmt_ratio(ratio),
            r.goal.text if r.goal else "",
            {True: "met", False: "not met", None: "" if r.goal is None else "n/a"}[met],
            r.note,
        )
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------- daemon

_LOG_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
_LOG_PREFIX = re.compile(r"^\S+ \S+ ")  # "<date> <time> " of the daemon's log format


def log_problems(text: str) -> list[str]:
    """The WARNING/ERROR/CRITICAL/Traceback lines of a daemon log, without timestamps."""
    return [_LOG_PREFIX.sub("", line) for line in text.splitlines() if _LOG_PROBLEM.search(line)]


def daemon_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("CORRAL_RPC", "CORRAL_EVENTS", "CORRAL_DATA_DIR"):
        env.pop(key, None)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    return env


def new_tmp(name: str) -> Path:
    """A fresh short temp dir (ipc paths are limited to ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=f"cb-{name[:8]}-"))


@dataclass
class BenchDaemon:
    """A daemon of one benchmark, in its own temp dir."""

    process: DaemonProcess
    tmp: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def rpc_url(self) -> str:
        return self.process.rpc_url

    @property
    def events_url(self) -> str:
        return self.process.events_url

    def client(self, timeout: float = 30.0) -> Client:
        return self.process.client(timeout=timeout)

    def log_text(self) -> str:
        return self.process.log_tail(limit=50_000_000)


def make_daemon(tmp: Path, env: dict[str, str] | None = None) -> DaemonProcess:
    return DaemonProcess(
        tmp / "run" / "corral",
        tmp / "data",
        log_path=tmp / "daemon.log",
        env={**daemon_env(tmp), **(env or {})},
    )


def apply_settings(client: Client, settings: dict[str, str]) -> None:
    for key, value in {"desktop_notifications": "off", **settings}.items():
        client.call("settings.set", {"key": key, "value": value})


@contextlib.contextmanager
def bench_daemon(
    ctx: Context,
    name: str,
    settings: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[BenchDaemon]:
    """A started daemon on a fresh temp dir; stopped (then killed) by PID on exit.

    Desktop notifications are turned off (no bus here: each would log a warning).
    ``env`` is added to its environment (which its provider processes inherit).
    """
    tmp = new_tmp(name)
    daemon = make_daemon(tmp, env)
    try:
        daemon.start()
        with daemon.client(timeout=30.0) as client:
            apply_settings(client, settings or {})
        yield BenchDaemon(daemon, tmp)
    finally:
        try:
            daemon.stop(timeout=60.0)
        finally:
            daemon.kill()
            if ctx.keep:
                ctx.log(f"  kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- /proc


def proc_status(pid: int) -> dict[str, int]:
    """``rss_kib`` and ``threads`` from /proc/PID/status."""
    out = {"rss_kib": 0, "threads": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            out["rss_kib"] = int(line.split()[1])
        elif line.startswith("Threads:"):
            out["threads"] = int(line.split()[1])
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def task_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads, living or ended)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def children(pid: int) -> list[int]:
    """PIDs of a process's direct children."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] != "Z"


# ----------------------------------------------------------------- events


class LeanSub:
    """A bare SUB socket (no high-water mark): ``recv`` gives ``(topic, frame,
    receive time in ns)``. Used for corral and for the baselines alike."""

    def __init__(self, url: str, topics: Iterable[str]) -> None:
        self.sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(url)
        for topic in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())

    def recv(self, timeout: float) -> tuple[str, dict[str, Any], int] | None:
        if not self.sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            return None
        topic, body = self.sock.recv_multipart()
        return topic.decode(), orjson.loads(body), time.time_ns()

    def wait_for(self, topic: str, timeout: float) -> None:
        """Receive until a message of ``topic`` arrives (the subscription is then in effect)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv(deadline - time.monotonic())
            if got is not None and got[0] == topic:
                return
        raise TimeoutError(f"no {topic} within {timeout}s")

    def close(self) -> None:
        self.sock.close(linger=0)

    def __enter__(self) -> LeanSub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------- mock


def mock_request(
    project: str, prompt: str, config: dict[str, Any], extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """``agent.start`` params of a mock session (``delayMs`` 0 unless given)."""
    params: dict[str, Any] = {
        "projectId": project,
        "provider": "mock",
        "prompt": prompt,
        "providerConfig": {"delayMs": 0, **config},
    }
    if extra_env:
        params["extraEnv"] = extra_env
    return params


def start_mock(
    client: Client,
    project: str,
    prompt: str = "bench",
    extra_env: dict[str, str] | None = None,
    **config: Any,
) -> str:
    """``agent.start`` of a mock session; returns its sessionId."""
    result = client.call("agent.start", mock_request(project, prompt, config, extra_env))
    return str(result["sessionId"])


def mock_argv(config: dict[str, Any], state_dir: Path, cwd: Path, session_id: str) -> list[str]:
    """The mock's command line as the daemon builds it (mock adapter)."""
    return [
        sys.executable,
        "-m",
        "corral.supervisor.providers.mock",
        "--config",
        orjson.dumps(config).decode(),
        "--state-dir",
        str(state_dir),
        "--cwd",
        str(cwd),
        "--session-id",
        session_id,
    ]


def prompt_line(text: str) -> bytes:
    """A stream-json user line, as the daemon writes a prompt to the mock."""
    return orjson.dumps({"type": "user", "message": {"role": "user", "content": text}}) + b"\n"


def wait_status(client: Client, project: str, statuses: Sequence[str], timeout: float) -> None:
    """Poll ``session.get`` until the project's session is in ``statuses``."""
    deadline = time.monotonic() + timeout
    while True:
        session = client.call("session.get", {"projectId": project})["session"]
        if session is not None and session["status"] in statuses:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"session of {project} not in {statuses} after {timeout}s")
        time.sleep(0.05)


# ----------------------------------------------------------------- standalone


def standalone(run: Callable[[Context], list[Row]], description: str) -> int:
    """``python -m bench.<name> [--quick] [--runs N] [--keep]``: one benchmark's rows."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 runs")
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (at least 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = parser.parse_args()
    runs = max(3, args.runs or (3 if args.quick else 5))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ctx = Context(quick=args.quick, runs=runs, keep=args.keep, log=log)
    rows = run(ctx)
    print(table(rows, ctx.quick))
    return 1 if any(r.failed for r in rows) else 0
