"""Where `corral serve` may put its ipc sockets: abstract and relative endpoints
are refused (exit 2, nothing touched), an existing directory is never chmodded,
and one that others can write to is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from corral.protocol.client import Client
from tests.integration.helpers import poll


def serve(tmp: Path, rpc: str, events: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp / "run"), "XDG_CONFIG_HOME": str(tmp / "c")}
    for key in ("CORRAL_RPC", "CORRAL_EVENTS", "CORRAL_DATA_DIR"):
        env.pop(key, None)
    argv = [sys.executable, "-m", "corral.supervisor", "serve", "--rpc", rpc, "--events", events]
    argv += ["--data-dir", str(tmp / "data")]
    with (tmp / "daemon-serve.log").open("ab") as log:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)


def output(tmp: Path) -> str:
    return (tmp / "daemon-serve.log").read_text(errors="replace")


def refused(proc: subprocess.Popen[bytes], tmp: Path) -> str:
    """The output of a serve that must exit 2 by itself (killed by PID if it does not)."""
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = output(tmp)
    assert proc.returncode == 2, out
    return out


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_relative_endpoints_are_refused_and_cwd_untouched(short_tmp: Path) -> None:
    cwd = short_tmp / "cwd"
    cwd.mkdir()
    os.chmod(cwd, 0o755)
    out = refused(serve(short_tmp, "ipc://rpc.sock", "ipc://events.sock", cwd), short_tmp)
    assert "ipc://rpc.sock" in out and "absolute" in out
    assert "Traceback" not in out
    assert mode(cwd) == 0o755
    assert os.listdir(cwd) == []


def test_abstract_endpoints_are_refused(short_tmp: Path) -> None:
    cwd = short_tmp / "cwd"
    cwd.mkdir()
    os.chmod(cwd, 0o755)
    name = f"ipc://@corral-test-{os.getpid()}"
    out = refused(serve(short_tmp, name + "-rpc", name + "-events", cwd), short_tmp)
    assert "abstract" in out and "Traceback" not in out
    assert mode(cwd) == 0o755


def test_world_writable_socket_dir_is_refused_not_chmodded(short_tmp: Path) -> None:
    shared = short_tmp / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    proc = serve(short_tmp, f"ipc://{shared}/r.sock", f"ipc://{shared}/e.sock", short_tmp)
    out = refused(proc, short_tmp)
    assert str(shared) in out and "writable by other users" in out
    assert mode(shared) == 0o1777
    assert os.listdir(shared) == []


def test_existing_own_socket_dir_is_used_as_it_is(short_tmp: Path) -> None:
    mine = short_tmp / "mine"
    mine.mkdir()
    os.chmod(mine, 0o755)
    rpc = f"ipc://{mine}/r.sock"
    proc = serve(short_tmp, rpc, f"ipc://{mine}/e.sock", short_tmp)
    try:
        with Client(rpc, timeout=0.5) as client:

            def pong() -> bool:
                assert proc.poll() is None, output(short_tmp)
                try:
                    return bool(client.call("daemon.ping")["pong"])
                except TimeoutError:
                    return False

            poll(pong, timeout=20)
        assert mode(mine) == 0o755
        # a missing socket dir is created private
        assert mode(short_tmp / "run" / "corral") == 0o700
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert proc.returncode == 0
