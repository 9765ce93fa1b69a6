"""The Node.js client (``clients/node``) against a real daemon, and its own unit tests.

The npm dependency (``zeromq``, whose prebuilt addon ships inside the package) is
installed once with ``npm ci --ignore-scripts`` into the test cache, in a
directory keyed by the hash of ``package.json`` and ``package-lock.json``. Each
test copies the client's sources (never a ``node_modules``) into its temp dir and
links ``node_modules`` there to the cached one: the checkout stays clean, and ESM
resolution (which ignores ``NODE_PATH``) finds the package by walking up from
the copied files.

Without ``node``/``npm`` the tests skip, unless the environment variable ``CI`` is
set: then they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages
from tests.support.claude_cli import _file_lock, cache_root

ROOT = Path(__file__).resolve().parents[2]
NODE_CLIENT = ROOT / "clients" / "node"

INSTALL_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}"
            f"\n--- stderr\n{self.stderr[-4000:]}"
        )


def _run(argv: list[str], timeout: float, cwd: Path, env: Mapping[str, str] | None = None) -> Ran:
    """Run ``argv`` in its own process group; on timeout kill that group (by the child's PID)."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{' '.join(argv)} timed out after {timeout:.0f} s\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return Ran(proc.returncode, stdout, stderr)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"`{name}` is not on PATH, and CI is set: the Node.js client must be tested")
    pytest.skip(f"`{name}` is not on PATH: the Node.js client tests need node and npm")


def _node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.pop("NODE_OPTIONS", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """``node_modules`` of the client, installed from its lock file into the test cache."""
    node, npm = _tool("node"), _tool("npm")
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((NODE_CLIENT / name).read_bytes())
    prefix = cache_root() / "node-client" / digest.hexdigest()[:16]
    marker = prefix / ".corral-install-complete"
    with _file_lock(cache_root() / "node-client.lock"):
        if not marker.is_file():
            shutil.rmtree(prefix, ignore_errors=True)
            prefix.mkdir(parents=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copy2(NODE_CLIENT / name, prefix / name)
            # --ignore-scripts: zeromq's install script would only look for the
            # bundled prebuilt addon, and fall back to a source build that
            # downloads; the prebuilt is loaded at run time either way.
            ran = _run(
                [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                INSTALL_TIMEOUT_S,
                prefix,
            )
            assert ran.returncode == 0, f"npm ci failed: {ran.explain()}"
            loaded = _run(
                [node, "-e", "process.stdout.write(require('zeromq').version)"], 60, prefix
            )
            assert loaded.returncode == 0, (
                f"the zeromq addon does not load on this platform: {loaded.explain()}"
            )
            marker.write_text(loaded.stdout.strip() + "\n")
    return prefix / "node_modules"


@pytest.fixture
def node_client(short_tmp: Path, node_modules: Path) -> Path:
    """A copy of clients/node in the test's temp dir, with the cached node_modules linked in."""
    dest = short_tmp / "node-client"
    shutil.copytree(NODE_CLIENT, dest, ignore=shutil.ignore_patterns("node_modules"))
    (dest / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return dest


def _follow_mock(
    node_client: Path, env: Mapping[str, str], project: str, config: str | None = None
) -> tuple[str, list[dict[str, object]], dict[str, int]]:
    """Run the example; returns (sessionId, the printed messages, the follower's stats)."""
    argv = [_tool("node"), "examples/follow-mock.js", project]
    if config is not None:
        argv.append(config)
    ran = _run(argv, RUN_TIMEOUT_S, node_client, env)
    assert ran.returncode == 0, ran.explain()
    found = re.search(r"^session (\S+) done (\{.*\})$", ran.stderr, re.MULTILINE)
    assert found is not None, ran.explain()
    printed = [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]
    return found.group(1), printed, json.loads(found.group(2))


def test_node_unit_tests() -> None:
    """The follower's resync logic with a fake transport (`node --test`), no daemon needed."""
    node = _tool("node")
    files = sorted(str(p) for p in (NODE_CLIENT / "test").glob("*.test.js"))
    assert files, "no node unit tests found"
    ran = _run([node, "--test", *files], RUN_TIMEOUT_S, NODE_CLIENT, _node_env())
    assert ran.returncode == 0, ran.explain()
    assert re.search(r"^# fail 0$", ran.stdout, re.MULTILINE), ran.explain()


def test_follow_mock_prints_the_stored_sequence(
    node_client: Path, daemon: DaemonProcess, client: Client, short_tmp: Path
) -> None:
    """Endpoints from the discovery file; every stored message printed once, in order."""
    assert (daemon.runtime_dir / "endpoints.json").is_file()
    env = _node_env(XDG_RUNTIME_DIR=str(daemon.runtime_dir.parent))
    session_id, printed, stats = _follow_mock(node_client, env, "node-fast")
    stored = all_messages(client, session_id)
    assert [m["seqId"] for m in printed] == [m["seqId"] for m in stored]
    assert printed == stored
    assert stats["live"] + stats["loaded"] == len(stored), stats
    session = client.call("session.get", {"projectId": "node-fast"})["session"]
    assert session["sessionId"] == session_id
    assert session["status"] == "done"


def test_follow_mock_live_events_over_env_endpoints(
    node_client: Path, daemon: DaemonProcess, client: Client, short_tmp: Path
) -> None:
    """CORRAL_RPC/CORRAL_EVENTS win over the runtime dir; a slower session runs through
    live events."""
    empty_runtime = short_tmp / "no-daemon-here"
    empty_runtime.mkdir()
    env = _node_env(
        XDG_RUNTIME_DIR=str(empty_runtime),
        CORRAL_RPC=daemon.rpc_url,
        CORRAL_EVENTS=daemon.events_url,
    )
    config = json.dumps({"delayMs": 150, "turns": 3})
    session_id, printed, stats = _follow_mock(node_client, env, "node-live", config)
    stored = all_messages(client, session_id)
    assert [m["seqId"] for m in printed] == [m["seqId"] for m in stored]
    assert printed == stored
    assert stats["live"] > 0, f"no message came from a live event: {stats}"
    assert stats["live"] + stats["loaded"] == len(stored), stats


TYPED_ERRORS_SCRIPT = """
import { connect, InvalidParams, NotFound, MethodNotFound } from "corral-client";
const client = await connect();
const out = {};
async function attempt(name, method, params) {
  try { await client.call(method, params); out[name] = null; }
  catch (e) { out[name] = { name: e.name, code: e.code, reason: e.reason, data: e.data,
    method: e.method, typed: e instanceof InvalidParams || e instanceof NotFound
      || e instanceof MethodNotFound }; }
}
await attempt("params", "agent.start", { projectId: "bad id", provider: "mock", prompt: "x" });
await attempt("missing", "session.messages.load", { sessionId: "no-such-session" });
await attempt("method", "no.such.method", undefined);
const pings = await Promise.all(Array.from({ length: 20 }, () => client.call("daemon.ping")));
out.pings = pings.filter((p) => p.pong === true).length;
await client.close();
process.stdout.write(JSON.stringify(out));
"""


def test_typed_errors_and_concurrent_calls(node_client: Path, daemon: DaemonProcess) -> None:
    env = _node_env(CORRAL_RPC=daemon.rpc_url, CORRAL_EVENTS=daemon.events_url)
    ran = _run(
        [_tool("node"), "--input-type=module", "-e", TYPED_ERRORS_SCRIPT],
        RUN_TIMEOUT_S,
        node_client,
        env,
    )
    assert ran.returncode == 0, ran.explain()
    out = json.loads(ran.stdout)
    assert out["params"] == {
        "name": "InvalidParams",
        "code": -32602,
        "reason": "invalid_params",
        "data": {"reason": "invalid_params", "field": "projectId"},
        "method": "agent.start",
        "typed": True,
    }
    assert out["missing"]["name"] == "NotFound"
    assert (out["missing"]["code"], out["missing"]["reason"]) == (-32005, "not_found")
    assert out["method"]["name"] == "MethodNotFound"
    assert out["method"]["code"] == -32601
    assert out["pings"] == 20
