"""The `corral` command: demo, serve (signals, discovery file, refusals) and
systemd notify."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll

CORRAL = [sys.executable, "-m", "corral.supervisor"]


def test_demo_streams_a_transcript_and_summarises() -> None:
    proc = subprocess.run(
        [*CORRAL, "demo", "--delay-ms", "0", "--no-keep"],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Add a --verbose flag" in out and "follow-up prompt" in out
    assert "tool" in out and "result" in out and "summary" in out
    assert "corral.db" in out and "$0.0" in out
    assert " 18 " in out  # the 18th message of the two turns was shown
    health = next(line for line in out.splitlines() if line.startswith("health · "))
    assert "health · inactive · $0.0" in health and "/h · 4/4 tool calls · context" in health
    assert "approval requested: rm -rf build/" in out and "allowed (corral approve" in out


def serve(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    run = tmp / "run"
    full_env = {**os.environ, "XDG_RUNTIME_DIR": str(run), "XDG_CONFIG_HOME": str(tmp / "cfg")}
    full_env.update(env or {})
    for key in ("CORRAL_RPC", "CORRAL_EVENTS", "CORRAL_DATA_DIR"):
        full_env.pop(key, None)
    return subprocess.Popen(
        [*CORRAL, "serve", "--data-dir", str(tmp / "data"), *extra],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_defaults_discovery_and_clean_signal_stop(short_tmp: Path, sig: int) -> None:
    proc = serve(short_tmp)
    try:
        discovery = short_tmp / "run" / "corral" / "endpoints.json"
        poll(discovery.exists, timeout=15)
        info = json.loads(discovery.read_text())
        assert info["pid"] == proc.pid and info["curveServerKey"] is None
        assert info["rpc"] == f"ipc://{short_tmp}/run/corral/rpc.sock"
        assert oct((short_tmp / "run" / "corral").stat().st_mode & 0o777) == "0o700"
        with Client(info["rpc"]) as client:
            assert client.call("daemon.ping")["boot"] == info["boot"]
            assert client.call("daemon.info")["pid"] == proc.pid
        proc.send_signal(sig)
        assert proc.wait(20) == 0
        assert not discovery.exists()
    finally:
        stop(proc)


def test_serve_refuses_insecure_tcp(short_tmp: Path) -> None:
    proc = serve(short_tmp, "--rpc", "tcp://0.0.0.0:5999")
    try:
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert b"CURVE" in out
    finally:
        stop(proc)


def test_serve_allows_loopback_tcp_with_flag(short_tmp: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = serve(short_tmp, "--insecure-tcp", "--rpc", url)
    try:
        with Client(url, timeout=1.0) as client:
            poll(lambda: _pings(client), timeout=15)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        stop(proc)


def _pings(client: Client) -> bool:
    try:
        return bool(client.call("daemon.ping")["pong"])
    except TimeoutError:
        return False


def test_second_daemon_on_same_endpoint_is_refused(daemon: DaemonProcess, short_tmp: Path) -> None:
    proc = serve(short_tmp, "--rpc", daemon.rpc_url, "--events", daemon.events_url)
    try:
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 2
        assert b"already serving" in out
    finally:
        stop(proc)
    with daemon.client() as client:
        assert client.call("daemon.ping")["pong"] is True


def test_systemd_notify_ready_and_stopping(short_tmp: Path) -> None:
    sock_path = short_tmp / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(20)
    proc = serve(short_tmp, env={"NOTIFY_SOCKET": str(sock_path)})
    try:
        assert listener.recv(256) == b"READY=1"
        proc.send_signal(signal.SIGTERM)
        assert listener.recv(256) == b"STOPPING=1"
        assert proc.wait(20) == 0
    finally:
        listener.close()
        stop(proc)


def test_daemon_shutdown_rpc_stops_the_process(daemon: DaemonProcess) -> None:
    with daemon.client() as client:
        assert client.call("daemon.shutdown") == {"stopping": True}
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 0
    time.sleep(0.1)
    assert not Path(daemon.rpc_url[len("ipc://") :]).exists()
