"""Shared fixtures: short temp dirs (ipc paths are limited to ~107 bytes), a real
daemon process per test (stopped by PID), clients and connected subscribers."""

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
    for d in started:
        if d.proc is not None and d.proc.poll() is None:
            d.stop(timeout=20)
        d.kill()


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
    if report.when == "call" and report.failed:
        tmp = item.funcargs.get("short_tmp") if hasattr(item, "funcargs") else None
        if isinstance(tmp, Path):
            for log in sorted(tmp.glob("daemon-*.log")):
                report.sections.append((f"daemon log {log.name}", log.read_text()[-6000:]))
