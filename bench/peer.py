"""peer: corral's rpc figure (``session.get`` on a live session) beside a peer
supervisor's, circusd's ``status`` command (ZeroMQ and JSON too), on the same
machine with the same client processes (:mod:`bench.rpc`).

circus is installed only for this benchmark, from PyPI with pip, into a
throwaway venv in a temp dir (removed afterwards); circusd runs one idle
watcher on ipc endpoints and is stopped by its PID. When circus cannot be
installed or started, the row says so. ``python -m bench.peer [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from bench.clients import LeanClient, WorkerPool, corral_request
from bench.common import (
    Context,
    Row,
    bench_daemon,
    children,
    new_tmp,
    standalone,
    start_mock,
    wait_status,
)
from bench.rpc import Sizes, compare

STATUS = {"command": "status", "properties": {}}


def sizes(ctx: Context) -> Sizes:
    """Smaller than rpc's: circusd answers a few hundred calls a second."""
    full = Sizes(one_client=3_000, each_of_four=1_000, sequential=1_000, budget_s=20.0)
    quick = Sizes(one_client=300, each_of_four=100, sequential=100, budget_s=2.0)
    result: Sizes = ctx.pick(full, quick)
    return result


def install(tmp: Path) -> tuple[Path, str]:
    """A venv with circus in it: (its python, circus's version). Raises on failure."""
    venv = tmp / "venv"
    python = venv / "bin" / "python"
    pip = ["install", "-q", "--no-compile", "--disable-pip-version-check", "circus"]
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # This interpreter's pip installs into the new venv (pip >= 22.3); else the
    # venv gets a pip of its own.
    got = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), *pip],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if got.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        got = subprocess.run(
            [str(python), "-m", "pip", *pip], capture_output=True, text=True, timeout=600
        )
    if got.returncode != 0:
        last = (got.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise RuntimeError(f"pip install circus failed: {last}")
    version = subprocess.run(
        [str(python), "-c", "import circus; print(circus.__version__)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return python, version


class Circusd:
    """circusd with one idle watcher, in ``tmp``; stopped by PID."""

    def __init__(self, python: Path, tmp: Path) -> None:
        self.endpoint = f"ipc://{tmp}/circus.sock"
        config = tmp / "circus.ini"
        config.write_text(
            "[circus]\n"
            f"endpoint = {self.endpoint}\n"
            f"pubsub_endpoint = ipc://{tmp}/circus-pub.sock\n"
            f"stats_endpoint = ipc://{tmp}/circus-stats.sock\n"
            "statsd = False\n"
            "check_delay = 5\n\n"
            "[watcher:idle]\n"
            f'cmd = {python} -c "import time; time.sleep(3600)"\n'
            "numprocesses = 1\n"
            "graceful_timeout = 2\n"
        )
        self.log = (tmp / "circusd.log").open("wb")
        self.proc = subprocess.Popen(
            [str(python.parent / "circusd"), str(config)],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = LeanClient(self.endpoint, "circus", STATUS)
        try:
            client.check()  # waits (bounded) until circusd answers
        except Exception:
            self.stop()
            raise
        finally:
            client.close()

    def stop(self) -> None:
        kids = children(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def run(ctx: Context) -> list[Row]:
    tmp = new_tmp("peer")
    try:
        try:
            python, version = install(tmp)
            circusd = Circusd(python, tmp)
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200]
            return [Row("peer", "circusd status", "", [], note=f"circus not run: {text}")]
        try:
            with (
                bench_daemon(ctx, "peer") as daemon,
                daemon.client() as client,
                WorkerPool(4) as pool,
            ):
                start_mock(client, "live", hang=True)
                wait_status(client, "live", ("running",), 30.0)
                request = corral_request("session.get", {"projectId": "live"})
                return compare(
                    ctx,
                    pool,
                    "peer",
                    "session.get vs circusd status:",
                    (daemon.rpc_url, "corral", request),
                    (circusd.endpoint, "circus", STATUS),
                    goals=False,
                    note=f"baseline: circusd {version} status (1 watcher), from PyPI "
                    "into a throwaway venv",
                    size=sizes(ctx),
                )
        finally:
            circusd.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
