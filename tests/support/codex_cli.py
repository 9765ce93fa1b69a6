"""Installing the real Codex CLI from npm for tests, and its offline test home.

:func:`ensure_codex_cli` installs ``@openai/codex`` at the pinned version once
into the test cache (``CORRAL_TEST_CACHE`` or ``~/.cache/corral-tests``, shared
with the Claude install and guarded by the same kind of file lock) and returns
the **native** ``codex`` binary inside the platform package, not the Node
wrapper. :func:`codex_test_env` writes ``CODEX_HOME/config.toml`` pointing the
CLI at a local fake Responses API server and returns the quiet environment.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from tests.support.npm_cli import (
    cache_root,
    check_version,
    file_lock,
    installed,
    npm_install,
    require_cli,
)

PACKAGE = "@openai/codex"
#: The version the recorded fixtures come from.
PINNED_VERSION = "0.169.0"

#: (machine, system) -> (npm platform package suffix, Rust target triple)
_PLATFORMS: dict[tuple[str, str], tuple[str, str]] = {
    ("x86_64", "Linux"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("aarch64", "Linux"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("arm64", "Linux"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("x86_64", "Darwin"): ("darwin-x64", "x86_64-apple-darwin"),
    ("arm64", "Darwin"): ("darwin-arm64", "aarch64-apple-darwin"),
}

CONFIG_TOML = """\
model = "gpt-5.5"
model_provider = "fake"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.fake]
name = "fake"
base_url = "http://127.0.0.1:{port}/v1"
wire_api = "responses"
env_key = "OPENAI_API_KEY"
request_max_retries = 1
stream_max_retries = 1

[analytics]
enabled = false

[otel]
metrics_exporter = "none"

[features]
plugins = false
unbounded_connection_retries = false
"""


class CodexInstallError(RuntimeError):
    """npm exists but installing or running the Codex CLI failed."""


def install_prefix(env: dict[str, str] | None = None) -> Path:
    """The npm prefix the pinned CLI is installed under (its ``node_modules/.bin/codex``
    is the Node wrapper)."""
    return cache_root(env) / f"codex-{PINNED_VERSION}"


def native_binary(prefix: Path) -> Path:
    """Where the platform package puts the native binary under an npm ``prefix``."""
    key = (platform.machine(), platform.system())
    if key not in _PLATFORMS:
        raise CodexInstallError(f"no Codex platform package for {key}")
    suffix, triple = _PLATFORMS[key]
    modules = prefix / "node_modules" / "@openai"
    return modules / f"codex-{suffix}" / "vendor" / triple / "bin" / "codex"


def check_codex_version(binary: Path) -> str:
    """Run ``codex --version`` and return its output; raise if it does not run."""
    return check_version(binary, CodexInstallError)


def ensure_codex_cli(env: dict[str, str] | None = None) -> Path | None:
    """Install the pinned Codex CLI into the test cache (once); return the native binary.

    Returns ``None`` when ``npm`` is not on PATH, so the caller can skip. When npm
    exists, install failures raise :class:`CodexInstallError` with npm's stderr.
    """
    npm = shutil.which("npm")
    if npm is None:
        return None
    prefix = install_prefix(env)
    binary = native_binary(prefix)
    with file_lock(cache_root(env) / "codex.lock"):
        if not installed(prefix, binary, CodexInstallError):
            spec = f"{PACKAGE}@{PINNED_VERSION}"
            npm_install(npm, prefix, spec, binary, CodexInstallError, check_codex_version)
        return binary


def require_codex_cli() -> Path:
    """The native ``codex`` binary for a test: installed once; without npm the test
    skips, and when ``CI`` is set a missing npm or a failed install fails it."""
    return require_cli(PACKAGE, ensure_codex_cli)


def codex_config_toml(port: int) -> str:
    """The offline config: provider ``fake`` on 127.0.0.1:``port``, quiet, one retry."""
    return CONFIG_TOML.format(port=port)


def codex_test_env(home: Path, port: int) -> dict[str, str]:
    """Write ``home/.codex/config.toml`` for the fake server on ``port``; return the env.

    ``HOME`` is ``home``, ``CODEX_HOME`` is ``home/.codex`` and ``TMPDIR`` is
    ``home/tmp`` (Codex wants TMPDIR not to contain CODEX_HOME). The caller
    overlays the result on its own environment.
    """
    codex_home = home / ".codex"
    tmpdir = home / "tmp"
    codex_home.mkdir(parents=True, exist_ok=True)
    tmpdir.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config_toml(port))
    return {
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "TMPDIR": str(tmpdir),
        "OPENAI_API_KEY": "dummy",
        "NO_COLOR": "1",
        "RUST_LOG": os.environ.get("CORRAL_TEST_CODEX_RUST_LOG", "warn"),
    }
