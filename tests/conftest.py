"""Shared fixtures: short temp dirs (ipc paths are limited to ~107 bytes), a real
daemon process per test (stopped by PID, and checked to leave none of its provider
processes behind), clients and connected subscribers."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# An illegal session status transition raises under test (in production it is
# logged as a bug and ignored); daemons started by the tests inherit this.
os.environ["CORRAL_STRICT_TRANSITIONS"] = "1"

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.support.claude_fixtures import claude_bin, fake_anthropic  # noqa: F401
from tests.support.codex_cli import require_codex_cli
from tests.support.proc import descendants, kill_if_same, proc_stat, wait_until


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cr-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The native ``codex`` binary (installed from npm into the test cache)."""
    return require_codex_cli()


DaemonFactory = Callable[..., DaemonProcess]

#: How long a process of a stopped daemon may take to finish dying (a SIGKILL sent
#: just before the daemon exited lands asynchronously) before it counts as left.
LEFT_BEHIND_GRACE_S = 1.0


def running_descendants(daemon: DaemonProcess) -> dict[int, int]:
    """pid -> start time of every live descendant of a running daemon ({} if it is not
    running). The daemon is a child subreaper: orphans of its providers stay here."""
    if daemon.proc is None or daemon.proc.poll() is not None:
        return {}
    found: dict[int, int] = {}
    for pid in descendants(daemon.pid):
        st = proc_stat(pid)
        if st is not None and not st.dead:
            found[pid] = st.start
    return found


def still_running(procs: dict[int, int]) -> list[int]:
    """Those of ``procs`` (pid -> start time) that are still the same live process."""
    alive = []
    for pid, start in procs.items():
        st = proc_stat(pid)
        if st is not None and not st.dead and st.start == start:
            alive.append(pid)
    return sorted(alive)


def cmdline_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or "?"


def stop_and_check(daemon: DaemonProcess) -> list[str]:
    """Stop ``daemon`` by PID; kill (by PID) and describe what it left running."""
    procs = running_descendants(daemon)
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop(timeout=20)
    daemon.kill()
    wait_until(lambda: not still_running(procs), timeout=LEFT_BEHIND_GRACE_S)
    left = []
    for pid in still_running(procs):
        left.append(f"pid {pid}: {cmdline_of(pid)}")
        kill_if_same(pid, procs[pid])
    return left


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[DaemonFactory]:
    """Start daemons on `short_tmp`; same `name` means same data dir (restarts)."""
    started: list[DaemonProcess] = []

    def make(
        name: str = "d", env: dict[str, str] | None = None, start: bool = True
    ) -> DaemonProcess:
        base_env = dict(os.environ)
        base_env.update(env or {})
        base_env.pop("CORRAL_RPC", None)
        base_env.pop("CORRAL_EVENTS", None)
        base_env.pop("CORRAL_DATA_DIR", None)
        base_env.setdefault("XDG_CONFIG_HOME", str(short_tmp / "config"))
        d = DaemonProcess(
            short_tmp / f"run-{name}" / "corral",
            short_tmp / f"data-{name}",
            log_path=short_tmp / f"daemon-{name}-{len(started)}.log",
            env=base_env,
        )
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    left: list[str] = []
    for d in started:
        left += stop_and_check(d)
    if left:
        pytest.fail(
            "processes the daemon started were still running after it stopped "
            "(now killed):\n" + "\n".join(left),
            pytrace=False,
        )


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> DaemonProcess:
    return daemon_factory()


@pytest.fixture
def client(daemon: DaemonProcess) -> Iterator[Client]:
    with daemon.client() as c:
        yield c


@pytest.fixture
def subscriber(daemon: DaemonProcess, client: Client) -> Iterator[Subscriber]:
    with Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client, timeout=5.0)
        yield sub


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """On failure, attach the daemon logs of the test to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when in ("call", "teardown") and report.failed:
        tmp = item.funcargs.get("short_tmp") if hasattr(item, "funcargs") else None
        if isinstance(tmp, Path):
            for log in sorted(tmp.glob("daemon-*.log")):
                report.sections.append((f"daemon log {log.name}", log.read_text()[-6000:]))
