"""Installing a real CLI from npm into the test cache, shared by the Claude and Codex helpers.

It owns the cache directory (``CORRAL_TEST_CACHE`` or ``~/.cache/corral-tests``),
the file lock that makes parallel test processes install only once, the
bounded ``npm install`` run and the ``--version`` check. Each CLI helper keeps
its package, pin, binary location and error type.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

INSTALL_TIMEOUT_S = 900.0
VERSION_TIMEOUT_S = 30.0
#: Written (with the version) into the prefix once an install has completed.
MARKER_NAME = ".corral-install-complete"


def cache_root(env: dict[str, str] | None = None) -> Path:
    """The directory test tooling is cached in (``CORRAL_TEST_CACHE`` or the default)."""
    environ = os.environ if env is None else env
    configured = environ.get("CORRAL_TEST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "corral-tests"


def tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of ``text`` (for error messages)."""
    return "\n".join(text.strip().splitlines()[-lines:])


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock so parallel test processes install only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run(
    argv: list[str], timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with no stdin, capturing text output, bounded by ``timeout``."""
    return subprocess.run(
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check_version(binary: Path, error: type[Exception]) -> str:
    """Run ``binary --version`` and return its output; raise ``error`` if it does not run."""
    try:
        proc = run([str(binary), "--version"], timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise error(f"{binary} --version failed: {exc}") from exc
    if proc.returncode != 0:
        raise error(f"{binary} --version exited {proc.returncode}: {tail(proc.stderr)}")
    return proc.stdout.strip()


def installed(prefix: Path, binary: Path, error: type[Exception]) -> bool:
    """Whether a completed install of ``binary`` is in ``prefix`` (then it must run)."""
    if (prefix / MARKER_NAME).is_file() and binary.exists():
        check_version(binary, error)
        return True
    return False


def npm_install(
    npm: str,
    prefix: Path,
    spec: str,
    binary: Path,
    error: type[Exception],
    check: Callable[[Path], str],
) -> None:
    """``npm install spec`` into ``prefix``; check ``binary`` runs and mark the install done.

    Failures (timeout, npm's exit status, a missing binary) raise ``error`` with
    npm's stderr.
    """
    prefix.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        proc = run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix), spec],
            timeout=INSTALL_TIMEOUT_S,
            cwd=prefix,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"npm install {spec} timed out after {INSTALL_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise error(f"npm install {spec} exited {proc.returncode}:\n{tail(proc.stderr)}")
    if not binary.exists():
        raise error(f"npm install {spec} succeeded but {binary} is missing:\n{tail(proc.stderr)}")
    version = check(binary)
    log.info("installed %s (%s) in %.1f s", spec, version, time.monotonic() - started)
    (prefix / MARKER_NAME).write_text(version + "\n")
