"""CURVE for tcp: `corral keys generate`, a daemon with --curve-dir, and who gets in.

A listed client works for RPC and events (sync, asyncio, the CLI); an unknown key and a
plain client get nothing, and the daemon logs the refusal (throttled); a key dropped
into authorized/ is accepted without a restart, and refused again once removed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq
import zmq.auth

from corral.protocol.aio import AsyncClient
from corral.protocol.client import Client, Subscriber
from corral.protocol.curve import CurveKeys, load_client_curve
from corral.protocol.transport import DaemonUnreachable
from tests.integration.helpers import poll

CORRAL = [sys.executable, "-m", "corral.supervisor"]
REFUSED = 1.5
"""Seconds a refused client waits before the test calls it refused."""


def assert_refused(url: str, curve: CurveKeys | None) -> None:
    """No answer to a ping within :data:`REFUSED` seconds."""
    client = Client(url, timeout=REFUSED, curve=curve)
    try:
        with pytest.raises(DaemonUnreachable):
            client.call("daemon.ping")
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"XDG_RUNTIME_DIR": str(tmp / "run"), "XDG_CONFIG_HOME": str(tmp / "cfg")})
    return env


def generate(tmp: Path, directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CORRAL, "keys", "generate", "--dir", str(directory), *extra],
        env=base_env(tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class CurveDaemon:
    proc: subprocess.Popen[bytes]
    rpc: str
    events: str
    keys: Path
    runtime: Path
    log: Path

    def server_key(self) -> bytes:
        return zmq.auth.load_certificate(self.keys / "server.key")[0]

    def client_keys(self, name: str = "client") -> CurveKeys:
        return load_client_curve(self.server_key(), self.keys / f"{name}.key_secret")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def curve_daemon(short_tmp: Path) -> Iterator[CurveDaemon]:
    keys = short_tmp / "keys"
    done = generate(short_tmp, keys)
    assert done.returncode == 0, done.stderr
    rpc, events = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    log = short_tmp / "daemon-curve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *CORRAL,
                "serve",
                "--curve-dir",
                str(keys),
                "--rpc",
                rpc,
                "--events",
                events,
                "--data-dir",
                str(short_tmp / "data"),
            ],
            env=base_env(short_tmp),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    daemon = CurveDaemon(proc, rpc, events, keys, short_tmp / "run" / "corral", log)
    try:
        poll(lambda: (daemon.runtime / "endpoints.json").exists() or proc.poll() is not None, 20)
        assert proc.poll() is None, daemon.log_text()
        yield daemon
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def test_keys_generate_writes_pyzmq_certificates(short_tmp: Path) -> None:
    keys = short_tmp / "k"
    done = generate(short_tmp, keys)
    assert done.returncode == 0, done.stderr
    for name in ("server", "client"):
        public, secret = zmq.auth.load_certificate(keys / f"{name}.key_secret")
        assert secret is not None and len(public) == 40
        assert zmq.auth.load_certificate(keys / f"{name}.key") == (public, None)
        assert stat.S_IMODE(os.stat(keys / f"{name}.key_secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    assert (keys / "authorized" / "client.key").read_bytes() == (keys / "client.key").read_bytes()
    server_key = zmq.auth.load_certificate(keys / "server.key")[0].decode()
    assert f"server public key: {server_key}" in done.stdout

    again = generate(short_tmp, keys)
    assert again.returncode == 1 and "--force" in again.stderr
    assert zmq.auth.load_certificate(keys / "server.key")[0].decode() == server_key
    forced = generate(short_tmp, keys, "--force")
    assert forced.returncode == 0
    assert zmq.auth.load_certificate(keys / "server.key")[0].decode() != server_key


def test_keys_generate_default_dir_is_under_xdg_config_home(short_tmp: Path) -> None:
    done = subprocess.run(
        [*CORRAL, "keys", "generate"],
        env=base_env(short_tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (short_tmp / "cfg" / "corral" / "curve" / "server.key_secret").is_file()


def test_listed_client_gets_rpc_and_events(curve_daemon: CurveDaemon) -> None:
    discovery = json.loads((curve_daemon.runtime / "endpoints.json").read_text())
    assert discovery["curveServerKey"] == curve_daemon.server_key().decode()
    keys = curve_daemon.client_keys()
    with Client(curve_daemon.rpc, timeout=5, curve=keys) as client:
        assert client.call("daemon.ping")["pong"] is True
        with Subscriber(curve_daemon.events, curve=keys) as sub:
            sub.wait_connected(client, timeout=5)
            topic, frame = sub.wait_for(lambda t, f: f["event"] == "daemon.heartbeat", 5)
            assert topic == "daemon/daemon.heartbeat" and frame["data"]["live"] == 0

    async def ping() -> bool:
        async with AsyncClient(curve_daemon.rpc, timeout=5, curve=keys) as aclient:
            return bool((await aclient.call("daemon.ping"))["pong"])

    assert asyncio.run(ping()) is True


def test_unknown_key_and_plain_client_get_nothing(curve_daemon: CurveDaemon) -> None:
    public, secret = zmq.curve_keypair()
    stranger = CurveKeys(curve_daemon.server_key(), public, secret)
    for curve in (stranger, None):
        assert_refused(curve_daemon.rpc, curve)
        with Subscriber(curve_daemon.events, curve=curve) as sub:
            assert sub.recv(REFUSED) is None  # not even the heartbeat
    assert_refused(curve_daemon.rpc, stranger)
    log = poll(
        lambda: curve_daemon.log_text() if "refused a client" in curve_daemon.log_text() else ""
    )
    refusals = [line for line in log.splitlines() if "refused a client" in line]
    assert len(refusals) == 1, refusals  # throttled: one line a minute, the rest counted
    assert public.decode() in refusals[0] or "handshake" in refusals[0]


def test_authorized_dir_is_read_without_a_restart(curve_daemon: CurveDaemon) -> None:
    extra = curve_daemon.keys / "extra"
    extra.mkdir()
    public_file, secret_file = zmq.auth.create_certificates(extra, "laptop")
    keys = load_client_curve(curve_daemon.server_key(), secret_file)
    assert_refused(curve_daemon.rpc, keys)
    listed = curve_daemon.keys / "authorized" / "laptop.key"
    shutil.copyfile(public_file, listed)
    with Client(curve_daemon.rpc, timeout=5, curve=keys) as client:
        assert client.call("daemon.ping")["pong"] is True
    listed.unlink()
    time.sleep(0.05)
    assert_refused(curve_daemon.rpc, keys)


def test_cli_needs_only_the_key_file_with_endpoints_json(
    curve_daemon: CurveDaemon, short_tmp: Path
) -> None:
    env = {
        **base_env(short_tmp),
        "CORRAL_RPC": curve_daemon.rpc,
        "CORRAL_EVENTS": curve_daemon.events,
        "NO_COLOR": "1",
    }

    def corral(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CORRAL, *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )

    key_file = str(curve_daemon.keys / "client.key_secret")
    listed = corral("info", "--json", "--timeout", "5", "--curve-key-file", key_file)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["pid"] == curve_daemon.proc.pid
    from_env = corral("info", "--json", "--timeout", "5", extra={"CORRAL_CURVE_KEY_FILE": key_file})
    assert from_env.returncode == 0, from_env.stderr
    explicit = corral(
        "info",
        "--timeout",
        "5",
        "--curve-key-file",
        key_file,
        "--curve-server-key",
        curve_daemon.server_key().decode(),
    )
    assert explicit.returncode == 0, explicit.stderr

    plain = corral("info", "--timeout", "1")
    assert plain.returncode == 3 and "--curve-key-file" in plain.stderr
    wrong = corral(
        "info", "--timeout", "1", "--curve-key-file", str(curve_daemon.keys / "client.key")
    )
    assert wrong.returncode == 2 and "holds no secret key" in wrong.stderr
    bad_server = corral("info", "--curve-key-file", key_file, "--curve-server-key", "short")
    assert bad_server.returncode == 2 and "40 Z85 characters" in bad_server.stderr


def test_curve_dir_without_keys_is_a_usage_error(short_tmp: Path) -> None:
    empty = short_tmp / "empty"
    empty.mkdir()
    done = subprocess.run(
        [*CORRAL, "serve", "--curve-dir", str(empty), "--rpc", f"tcp://127.0.0.1:{free_port()}"],
        env=base_env(short_tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"corral: no CURVE server key {empty}/server.key_secret; "
        f"create the keys with: corral keys generate --dir {empty}"
    ]


def test_readable_server_secret_is_refused(short_tmp: Path) -> None:
    keys = short_tmp / "keys"
    assert generate(short_tmp, keys).returncode == 0
    os.chmod(keys / "server.key_secret", 0o644)
    done = subprocess.run(
        [*CORRAL, "serve", "--curve-dir", str(keys), "--rpc", f"tcp://127.0.0.1:{free_port()}"],
        env=base_env(short_tmp),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and f"chmod 600 {keys}/server.key_secret" in done.stderr
