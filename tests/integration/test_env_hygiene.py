"""What a provider process gets: the daemon's env minus corral's own CORRAL_* (and the
systemd variables meant for the daemon), extraEnv minus provider settings and loader
and interpreter hooks (reported in droppedEnv, and absent from the running provider's
/proc/<pid>/environ), and the prompt byte for byte (argv lists, never a shell)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess
from tests.conftest import DaemonFactory
from tests.integration.helpers import poll, wait_status

HOOKS = {
    "LD_PRELOAD": "/nonexistent/corral-test-preload.so",
    "LD_LIBRARY_PATH": "/nonexistent/lib",
    "LD_AUDIT": "/nonexistent/audit.so",
    "PYTHONSTARTUP": "/nonexistent/startup.py",
    "NODE_OPTIONS": "--require /nonexistent/x.js",
    "BASH_ENV": "/nonexistent/bashrc",
    "ENV": "/nonexistent/shrc",
}
SITECUSTOMIZE = """
import os
marker = os.environ.get("CORRAL_TEST_MARKER_FILE") or os.environ.get("MARKER_FILE")
if marker:
    with open(marker, "w") as fh:
        fh.write("sitecustomize ran in pid %d" % os.getpid())
"""


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = [item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item]
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def provider_pid(daemon: DaemonProcess, session_id: str) -> int | None:
    for pid in daemon.children():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if session_id.encode() in cmdline:
            return pid
    return None


def test_provider_env_is_filtered(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    site = short_tmp / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    marker = short_tmp / "marker"
    # The hook is real: the same interpreter with this PYTHONPATH runs it.
    subprocess.run(
        [sys.executable, "-c", "pass"],
        env={**os.environ, "PYTHONPATH": str(site), "MARKER_FILE": str(marker)},
        check=True,
        timeout=30,
    )
    assert marker.read_text().startswith("sitecustomize ran")
    marker.unlink()

    daemon = daemon_factory(
        env={
            "CORRAL_TEST_SECRET": "daemon-only",
            "CORRAL_TEST_MARKER_FILE": str(marker),
            "NOTIFY_SOCKET": str(short_tmp / "no-such-notify.sock"),
            "CORRAL_HYGIENE_VISIBLE_TO_DAEMON": "1",
            "PLAIN_DAEMON_VAR": "inherited",
        }
    )
    with daemon.client() as client, Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client, timeout=5.0)
        started = client.call(
            "agent.start",
            {
                "projectId": "hygiene",
                "provider": "mock",
                "prompt": "hello",
                "providerConfig": {"delayMs": 0},
                "extraEnv": {
                    **HOOKS,
                    "PYTHONPATH": str(site),
                    "MARKER_FILE": str(marker),
                    "KEEP_ME": "kept",
                },
            },
        )
        assert started["droppedEnv"] == sorted([*HOOKS, "PYTHONPATH"])
        session_id = started["sessionId"]
        assert wait_status(sub, session_id)["status"] == "done"
        pid = poll(lambda: provider_pid(daemon, session_id), timeout=10)
        env = environ_of(pid)
    assert env["KEEP_ME"] == "kept" and env["MARKER_FILE"] == str(marker)
    assert env["PLAIN_DAEMON_VAR"] == "inherited"
    assert not [key for key in env if key.startswith("CORRAL_")], sorted(env)
    assert "NOTIFY_SOCKET" not in env
    for key in [*HOOKS, "PYTHONPATH"]:
        assert key not in env or env[key] == os.environ.get(key), key
    assert not marker.exists(), marker.read_text()


# What a client may not hand a provider, whatever the provider: keys that switch
# Claude Code's backend or credentials (only CLAUDE_CODE_EXPERIMENTAL_* passes
# among CLAUDE*), other providers' settings, and loader or interpreter hooks.
REFUSED = [
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "CODEX_HOME",
    "OLLAMA_HOST",
    "LD_PRELOAD",
    "PYTHONPATH",
    "NODE_OPTIONS",
]
PASSED = {"CLAUDE_CODE_EXPERIMENTAL_AGENT_TEAMS": "corral-kept-1", "PLAIN_EXTRA": "corral-kept-2"}


def test_refused_keys_never_reach_the_running_provider(daemon: DaemonProcess) -> None:
    refused = {key: f"corral-refused-{key.lower()}" for key in REFUSED}
    with daemon.client() as client:
        started = client.call(
            "agent.start",
            {
                "projectId": "refused",
                "provider": "mock",
                "prompt": "hello",
                "providerConfig": {"delayMs": 0, "hang": True},
                "extraEnv": {**refused, **PASSED},
            },
        )
        assert started["droppedEnv"] == sorted(REFUSED)
        session_id = started["sessionId"]
        # the hanging mock stays up; its cmdline names the session once it was exec'd
        pid = poll(lambda: provider_pid(daemon, session_id), timeout=10)
        env = environ_of(pid)
        assert client.call("agent.stop", {"projectId": "refused"}, timeout=15)["status"] == "done"
    for key, value in PASSED.items():
        assert env.get(key) == value, key
    for key, value in refused.items():
        assert env.get(key) != value, key
    leaked = sorted(key for key, value in env.items() if value in refused.values())
    assert leaked == []


JUNK = "".join(chr(c) for c in range(1, 256)) + " \U0001f600 \u202e \ufeff"
PROMPT = "$(touch /tmp/pwned); `id` | cat > /dev/null && echo $HOME ${PATH} 'a' \"b\" \\ ; * ? ~\n"


def test_prompt_reaches_the_provider_byte_for_byte(daemon: DaemonProcess, client: Client) -> None:
    prompt = PROMPT + JUNK
    with Subscriber(daemon.events_url) as sub:
        sub.wait_connected(client, timeout=5.0)
        started = client.call(
            "agent.start",
            {
                "projectId": "junk",
                "provider": "mock",
                "prompt": prompt,
                "providerConfig": {"delayMs": 0},
            },
        )
        assert wait_status(sub, started["sessionId"])["status"] == "done"
    state = daemon.data_dir / "providers" / "mock" / f"{started['sessionId']}.json"
    prompts = json.loads(state.read_text(encoding="utf-8"))["prompts"]
    assert prompts == [prompt]
    assert prompts[0].encode("utf-8") == prompt.encode("utf-8")
