"""Installing the real Claude Code CLI from npm for tests, and its offline test env.

:func:`ensure_claude_cli` installs ``@anthropic-ai/claude-code`` once into a cache
directory (``CORRAL_TEST_CACHE`` or ``~/.cache/corral-tests``) and returns the
``claude`` executable; :func:`claude_test_env` gives the quiet environment that
keeps the CLI talking only to a local fake Messages API server.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "@anthropic-ai/claude-code"
#: The version the recorded fixtures come from.
PINNED_VERSION = "2.1.332"

INSTALL_TIMEOUT_S = 900.0
VERSION_TIMEOUT_S = 30.0


class ClaudeInstallError(RuntimeError):
    """npm exists but installing or running the Claude Code CLI failed."""


def cache_root(env: dict[str, str] | None = None) -> Path:
    """The directory test tooling is cached in (``CORRAL_TEST_CACHE`` or the default)."""
    environ = os.environ if env is None else env
    configured = environ.get("CORRAL_TEST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "corral-tests"


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so parallel test processes install only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _run(
    argv: list[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _version_missing(npm: str, version: str) -> bool:
    """Whether the registry says ``PACKAGE@version`` does not exist (npm E404).

    Any other failure (network, timeout) is not taken as "missing": the pinned
    install is then attempted and reports its own error.
    """
    try:
        proc = _run([npm, "view", f"{PACKAGE}@{version}", "version", "--json"], timeout=120)
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
    try:
        proc = _run([str(binary), "--version"], timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ClaudeInstallError(f"{binary} --version failed: {exc}") from exc
    if proc.returncode != 0:
        raise ClaudeInstallError(
            f"{binary} --version exited {proc.returncode}: {_tail(proc.stderr)}"
        )
    return proc.stdout.strip()


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
    marker = prefix / ".corral-install-complete"
    with _file_lock(cache_root(env) / "claude-code.lock"):
        if marker.is_file() and binary.exists():
            check_claude_version(binary)
            return binary
        prefix.mkdir(parents=True, exist_ok=True)
        spec = f"{PACKAGE}@{PINNED_VERSION}"
        if _version_missing(npm, PINNED_VERSION):
            log.warning("%s is not on the registry; installing %s@latest", spec, PACKAGE)
            spec = f"{PACKAGE}@latest"
        started = time.monotonic()
        try:
            proc = _run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), spec],
                timeout=INSTALL_TIMEOUT_S,
                cwd=prefix,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClaudeInstallError(
                f"npm install {spec} timed out after {INSTALL_TIMEOUT_S:.0f} s"
            ) from exc
        if proc.returncode != 0:
            raise ClaudeInstallError(
                f"npm install {spec} exited {proc.returncode}:\n{_tail(proc.stderr)}"
            )
        if not binary.exists():
            raise ClaudeInstallError(
                f"npm install {spec} succeeded but {binary} is missing:\n{_tail(proc.stderr)}"
            )
        version = check_claude_version(binary)
        log.info("installed %s (%s) in %.1f s", spec, version, time.monotonic() - started)
        marker.write_text(version + "\n")
        return binary


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
