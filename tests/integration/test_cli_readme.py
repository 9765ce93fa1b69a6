"""The README's Python snippet runs as written, against a test daemon."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages

README = Path(__file__).resolve().parents[2] / "README.md"


def python_snippet() -> str:
    """The first ```python block of the README, as it is written there."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text(), re.S | re.M)
    assert blocks, "no python block in README.md"
    return str(blocks[0])


def test_readme_snippet_runs_as_written(daemon: DaemonProcess, client: Client) -> None:
    code = python_snippet()
    assert "corral.protocol" in code and '"mock"' in code
    env = {**os.environ, "CORRAL_RPC": daemon.rpc_url, "CORRAL_EVENTS": daemon.events_url}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "the turn ended: done"
    session = client.session("readme-demo")
    assert session is not None and session["status"] == "done"
    stored = all_messages(client, session["sessionId"])
    assert [int(line.split()[0]) for line in lines[:-1]] == [m["seqId"] for m in stored]
    assert lines[0] == "1 user Add a --verbose flag to the CLI"
