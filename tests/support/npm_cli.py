"""Installing a real CLI from npm into the test cache, shared by the Claude and Codex helpers.

It owns the cache directory (``CORRAL_TEST_CACHE`` or ``~/.cache/corral-tests``),
the file lock that makes parallel test processes install only once, the
bounded ``npm install`` run and the ``--version`` check, and what a test does
without a CLI (:func:`require_cli`): without npm it skips, except when the
environment variable ``CI`` is set (non-empty): then a missing npm, like a
failed install, fails it. Each CLI helper keeps its package, pin, binary
location and error type.

``python -m tests.support.npm_cli --install-all`` installs every CLI into the
same cache the fixtures use (CI runs it as a step of its own before the tests);
its exit status is 1 when an install failed, or when npm is missing under CI.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

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


# ------------------------------------------------------------------ for tests

#: Install failures already seen in this process: (package, npm) -> message, so a
#: failing install is tried once per run, not once per test module.
_FAILED: dict[tuple[str, str], str] = {}


def under_ci(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``CI`` is set (non-empty): then the real-CLI tests must run."""
    environ = os.environ if env is None else env
    return bool(environ.get("CI"))


def _cannot_run(reason: str) -> NoReturn:
    if under_ci():
        pytest.fail(f"{reason}\n(CI is set: the real-CLI tests must run)", pytrace=False)
    pytest.skip(reason)


def require_cli(package: str, ensure: Callable[[], Path | None]) -> Path:
    """The binary ``ensure()`` installs (once) for a test.

    Without npm on PATH the test skips, and so does it when the install fails
    (with npm's message); when ``CI`` is set, both fail the test instead.
    """
    npm = shutil.which("npm")
    if npm is None:
        _cannot_run(f"npm not available: cannot install {package}")
    key = (package, npm)
    if key not in _FAILED:
        try:
            binary = ensure()
        except RuntimeError as exc:  # the helpers' *InstallError
            _FAILED[key] = str(exc)
        else:
            if binary is not None:
                return binary
            _FAILED[key] = "npm disappeared from PATH"
    _cannot_run(f"installing {package} failed: {_FAILED[key]}")


def install_all(out: Callable[[str], None] = print) -> int:
    """Install every CLI the tests run; 0 when all are there (or npm is missing outside CI)."""
    from tests.support import claude_cli, codex_cli

    if shutil.which("npm") is None:
        out(f"npm not available: the real-CLI tests will {'fail' if under_ci() else 'skip'}")
        return 1 if under_ci() else 0
    failed = 0
    installers = [
        (claude_cli.PACKAGE, claude_cli.ensure_claude_cli),
        (codex_cli.PACKAGE, codex_cli.ensure_codex_cli),
    ]
    for package, ensure in installers:
        started = time.monotonic()
        try:
            binary = ensure()
        except RuntimeError as exc:
            out(f"{package}: install failed: {exc}")
            failed += 1
            continue
        out(f"{package}: {binary} ({time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.npm_cli", description=__doc__)
    parser.add_argument(
        "--install-all", action="store_true", help="install every CLI into the test cache"
    )
    args = parser.parse_args(argv)
    if not args.install_all:
        parser.print_usage(sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(f"test cache: {cache_root()}")
    return install_all()


if __name__ == "__main__":
    sys.exit(main())
