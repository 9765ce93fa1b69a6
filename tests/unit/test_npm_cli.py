"""What a real-CLI test does without its CLI: without npm (or when the install
fails) it skips, but when ``CI`` is set (non-empty) it fails; and the
``--install-all`` entry point CI runs before the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support import npm_cli
from tests.support.claude_cli import require_claude_cli
from tests.support.codex_cli import require_codex_cli

ROOT = Path(__file__).resolve().parents[2]
REQUIRES: list[tuple[str, Callable[[], Path]]] = [
    ("@anthropic-ai/claude-code", require_claude_cli),
    ("@openai/codex", require_codex_cli),
]
FAILING_NPM = "#!/bin/sh\necho 'npm ERR! simulated registry failure' >&2\nexit 1\n"


def outcome(require: Callable[[], Path]) -> tuple[str, str]:
    """("skip" or "fail", message) of ``require()``; caught here, so that a skip
    where a failure is expected fails the test instead of skipping it."""
    try:
        binary = require()
    except pytest.skip.Exception as exc:
        return "skip", str(exc)
    except pytest.fail.Exception as exc:
        return "fail", str(exc)
    raise AssertionError(f"expected a skip or a failure, got {binary}")


@pytest.fixture
def no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is an empty directory: no npm (nor anything else) on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("CORRAL_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(npm_cli, "_FAILED", {})
    return empty


@pytest.fixture
def failing_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ``npm`` that fails every command, and an empty test cache."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAILING_NPM)
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("CORRAL_TEST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(npm_cli, "_FAILED", {})
    return npm


@pytest.mark.parametrize(("package", "require"), REQUIRES)
def test_without_npm_a_test_skips(
    no_npm: Path, monkeypatch: pytest.MonkeyPatch, package: str, require: Callable[[], Path]
) -> None:
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", value)  # set but empty: not CI
        kind, message = outcome(require)
        assert kind == "skip", message
        assert f"npm not available: cannot install {package}" in message


@pytest.mark.parametrize(("package", "require"), REQUIRES)
def test_without_npm_under_ci_a_test_fails(
    no_npm: Path, monkeypatch: pytest.MonkeyPatch, package: str, require: Callable[[], Path]
) -> None:
    monkeypatch.setenv("CI", "1")
    kind, message = outcome(require)
    assert kind == "fail", message
    assert f"npm not available: cannot install {package}" in message
    assert "CI is set" in message


@pytest.mark.parametrize(("package", "require"), REQUIRES)
def test_a_failed_install_skips_and_under_ci_fails(
    failing_npm: Path, monkeypatch: pytest.MonkeyPatch, package: str, require: Callable[[], Path]
) -> None:
    monkeypatch.setenv("CI", "true")
    kind, message = outcome(require)
    assert kind == "fail", message
    assert f"installing {package} failed" in message
    assert "simulated registry failure" in message  # npm's own words
    assert "CI is set" in message
    monkeypatch.delenv("CI")
    kind, message = outcome(require)
    assert kind == "skip", message
    assert f"installing {package} failed" in message


def test_install_all_reports_what_failed(
    failing_npm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    lines: list[str] = []
    assert npm_cli.install_all(lines.append) == 1
    assert len(lines) == 2
    assert lines[0].startswith("@anthropic-ai/claude-code: install failed")
    assert lines[1].startswith("@openai/codex: install failed")


def run_install_all(path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(PATH=str(path), CORRAL_TEST_CACHE=str(path.parent / "cache"))
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "tests.support.npm_cli", "--install-all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_entry_point_without_npm_fails_only_under_ci(no_npm: Path) -> None:
    outside = run_install_all(no_npm, None)
    assert outside.returncode == 0, outside.stderr
    assert "npm not available: the real-CLI tests will skip" in outside.stdout
    under = run_install_all(no_npm, "1")
    assert under.returncode == 1, under.stderr
    assert "npm not available: the real-CLI tests will fail" in under.stdout


def test_the_entry_point_fails_when_an_install_fails(failing_npm: Path) -> None:
    ran = run_install_all(failing_npm.parent, None)
    assert ran.returncode == 1, ran.stderr
    assert "@openai/codex: install failed" in ran.stdout
    assert str(failing_npm.parent.parent / "cache") in ran.stdout  # the cache it was told
