"""Installing the real Claude Code CLI from npm for tests, and its offline test env.

:func:`ensure_claude_cli` installs ``@anthropic-ai/claude-code`` once into a cache
directory (``CORRAL_TEST_CACHE`` or ``~/.cache/corral-tests``) and returns the
``claude`` executable (:func:`require_claude_cli` is the same for a test: skip
or, under CI, fail without it); :func:`claude_test_env` gives the quiet environment that
keeps the CLI talking only to a local fake Messages API server.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

# ``cache_root`` and ``_file_lock`` are also imported from here by other tests.
from tests.support.npm_cli import (
    cache_root,
    check_version,
    installed,
    npm_install,
    require_cli,
    run,
)
from tests.support.npm_cli import file_lock as _file_lock

log = logging.getLogger(__name__)

PACKAGE = "@anthropic-ai/claude-code"
#: The version the recorded fixtures come from.
PINNED_VERSION = "2.1.332"


class ClaudeInstallError(RuntimeError):
    """npm exists but installing or running the Claude Code CLI failed."""


def _version_missing(npm: str, version: str) -> bool:
    """Whether the registry says ``PACKAGE@version`` does not exist (npm E404).

    Any other failure (network, timeout) is not taken as "missing": the pinned
    install is then attempted and reports its own error.
    """
    try:
        proc = run([npm, "view", f"{PACKAGE}@{version}", "version", "--json"], timeout=120)
    except subprocess.TimeoutExpired:
        return False
    if proc.returncode == 0:
        try:
            found = json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError:
            return False
        if isinstance(found, list):
            return version not in found
        return found != version
    return "E404" in proc.stdout or "E404" in proc.stderr


def check_claude_version(binary: Path) -> str:
    """Run ``claude --version`` and return its output; raise if it does not run."""
    return check_version(binary, ClaudeInstallError)


def ensure_claude_cli(env: dict[str, str] | None = None) -> Path | None:
    """Install the Claude Code CLI into the test cache (once) and return ``claude``.

    Returns ``None`` when ``npm`` is not on PATH, so the caller can skip. When npm
    exists, install failures raise :class:`ClaudeInstallError` with npm's stderr.
    """
    npm = shutil.which("npm")
    if npm is None:
        return None
    prefix = cache_root(env) / "claude-code"
    binary = prefix / "node_modules" / ".bin" / "claude"
    with _file_lock(cache_root(env) / "claude-code.lock"):
        if installed(prefix, binary, ClaudeInstallError):
            return binary
        spec = f"{PACKAGE}@{PINNED_VERSION}"
        if _version_missing(npm, PINNED_VERSION):
            log.warning("%s is not on the registry; installing %s@latest", spec, PACKAGE)
            spec = f"{PACKAGE}@latest"
        npm_install(npm, prefix, spec, binary, ClaudeInstallError, check_claude_version)
        return binary


def require_claude_cli() -> Path:
    """The ``claude`` executable for a test: installed once; without npm the test
    skips, and when ``CI`` is set a missing npm or a failed install fails it."""
    return require_cli(PACKAGE, ensure_claude_cli)


def claude_test_env(base_url: str, home: Path, tmpdir: Path) -> dict[str, str]:
    """The quiet, offline environment for a Claude Code test run.

    It does not set ``IS_SANDBOX``: tests that need bypass mode as root add it.
    """
    return {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "dummy",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "CLAUDE_CODE_MAX_RETRIES": "1",
    }
