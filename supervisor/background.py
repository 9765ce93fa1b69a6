"""Running a daemon as a child process (for `corral demo` and the test-suite).

:class:`DaemonProcess` starts ``corral serve`` with its own runtime and data
directories, waits until it answers ``daemon.ping``, and stops it by PID:
``daemon.shutdown`` first, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from corral.protocol.client import Client
from corral.protocol.endpoints import default_events_url, default_rpc_url


class DaemonProcess:
    def __init__(
        self,
        runtime_dir: Path,
        data_dir: Path,
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.data_dir = data_dir
        self.rpc_url = default_rpc_url(runtime_dir)
        self.events_url = default_events_url(runtime_dir)
        self.log_path = log_path or (runtime_dir.parent / "daemon.log")
        self._env = dict(os.environ if env is None else env)
        self._env["XDG_RUNTIME_DIR"] = str(runtime_dir.parent)
        self._args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> DaemonProcess:
        self.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._log = self.log_path.open("ab")
        argv = [
            sys.executable,
            "-m",
            "corral.supervisor",
            "serve",
            "--rpc",
            self.rpc_url,
            "--events",
            self.events_url,
            "--data-dir",
            str(self.data_dir),
            *self._args,
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self._env,
        )
        deadline = time.monotonic() + timeout
        with Client(self.rpc_url, timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"daemon exited with {self.proc.returncode}: {self.log_tail()}"
                    )
                try:
                    client.ping(timeout=0.5)
                    return self
                except TimeoutError:
                    continue
        self.kill()
        raise RuntimeError(f"daemon did not answer within {timeout}s: {self.log_tail()}")

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.rpc_url, timeout=timeout)

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """Graceful stop: daemon.shutdown, then SIGTERM, then SIGKILL (by PID)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                with Client(self.rpc_url, timeout=2.0) as client:
                    client.call("daemon.shutdown")
            except Exception:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.kill()
        self._close_log()
        return self.proc.returncode

    def children(self) -> list[int]:
        """PIDs of the daemon's direct children (its provider processes)."""
        if self.proc is None:
            return []
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return pids

    def kill(self, *, reap_children: bool = True) -> list[int]:
        """SIGKILL, as a crash would. Then, unless told not to, kill the provider
        process groups it left behind (by the PIDs read before the kill)."""
        orphans: list[int] = []
        if self.proc is not None and self.proc.poll() is None:
            orphans = self.children()
            self.proc.kill()
            self.proc.wait(10)
        if reap_children:
            for pid in orphans:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        self._close_log()
        return orphans

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
