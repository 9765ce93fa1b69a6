"""How corral launches ``codex app-server``: binary, version, argv, env and CODEX_HOME.

Pure functions apart from a bounded ``codex --version`` probe and writing the
corral-owned ``CODEX_HOME``; the process itself is spawned by the handle.

The npm package ``@openai/codex`` installs a Node wrapper (``bin/codex.js``)
that finds and runs a native Rust binary from the platform package
``@openai/codex-<os>-<arch>/vendor/<target triple>/bin/codex``. On older Node
the wrapper *spawns* it (an extra process that does not forward SIGKILL), so
corral always resolves a wrapper to the native binary and runs that directly.

``CODEX_HOME`` is where Codex keeps its config, threads (rollouts) and logs. By
default corral gives each user one of its own under the data directory
(``<data_dir>/providers/codex/home``), so resume finds its threads and an
operator's ``config.toml`` (``provider_settings.codex.config.configToml``) is
never mixed with a person's interactive ``~/.codex``. A configured
``codexHome`` is used as it is, and nothing is written into it. Credentials
are not copied: give Codex an ``OPENAI_API_KEY`` (operator env) or point
``codexHome`` at a home that is logged in.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path

from corral.supervisor.providers.binaries import (
    binary_version,
    expand_home,
    find_binary,
    is_executable,
)

__all__ = [
    "BINARY_ENV",
    "FALLBACK_LOCATIONS",
    "build_argv",
    "build_env",
    "codex_version",
    "default_codex_home",
    "find_codex_binary",
    "native_from_wrapper",
    "prepare_codex_home",
    "resolve_codex_home",
]

#: Environment variable naming the codex binary (after the configured one).
BINARY_ENV = "CORRAL_CODEX_BIN"

#: Well-known install locations, searched after PATH (``~`` is the env's HOME).
FALLBACK_LOCATIONS: tuple[str, ...] = (
    "~/.local/bin/codex",
    "~/.npm-global/bin/codex",
    "~/.cargo/bin/codex",
    "/usr/local/bin/codex",
    "/opt/homebrew/bin/codex",
    "/usr/bin/codex",
)

#: Variables a Codex tool process inherits from the Codex that runs it; a daemon
#: started from such a shell must not hand them to the Codex it launches.
INHERITED_CODEX_VARS: frozenset[str] = frozenset(
    {"CODEX_SANDBOX", "CODEX_SANDBOX_NETWORK_DISABLED", "CODEX_THREAD_ID", "CODEX_HOME"}
)

#: (machine, system) -> (npm platform package suffix, Rust target triple)
_PLATFORMS: dict[tuple[str, str], tuple[str, str]] = {
    ("x86_64", "Linux"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("amd64", "Linux"): ("linux-x64", "x86_64-unknown-linux-musl"),
    ("aarch64", "Linux"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("arm64", "Linux"): ("linux-arm64", "aarch64-unknown-linux-musl"),
    ("x86_64", "Darwin"): ("darwin-x64", "x86_64-apple-darwin"),
    ("arm64", "Darwin"): ("darwin-arm64", "aarch64-apple-darwin"),
}

CONFIG_TOML = "config.toml"


def _is_script(path: str) -> bool:
    """Whether ``path`` is a text script (``#!``) rather than a native executable."""
    try:
        with open(path, "rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def native_from_wrapper(path: str) -> str | None:
    """The native binary the npm wrapper at ``path`` would run, or None.

    ``path`` may be the ``node_modules/.bin/codex`` link or ``bin/codex.js``
    itself. The platform package is looked up the way Node resolves it: in
    ``node_modules`` beside the wrapper package and in each parent directory's
    ``node_modules``; the package's own ``vendor/`` comes last (old layouts).
    """
    platform_key = (platform.machine(), platform.system())
    if platform_key not in _PLATFORMS:
        return None
    suffix, triple = _PLATFORMS[platform_key]
    real = os.path.realpath(path)
    package_root = Path(real).parent.parent
    relative = Path("vendor") / triple / "bin" / "codex"
    platform_dir = Path("node_modules") / "@openai" / f"codex-{suffix}"
    candidates: list[Path] = []
    for directory in (package_root, *package_root.parents):
        if directory.name == "node_modules":
            continue
        candidates.append(directory / platform_dir / relative)
    candidates.append(package_root / relative)
    for candidate in candidates:
        if is_executable(str(candidate)):
            return str(candidate)
    return None


def _native(path: str) -> str:
    """``path`` itself when native, else the binary its wrapper runs (or ``path``)."""
    if path.endswith(".js") or _is_script(os.path.realpath(path)):
        return native_from_wrapper(path) or path
    return path


def find_codex_binary(
    configured: str | None, env: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """Locate the native ``codex`` executable.

    Order: ``configured``, ``$CORRAL_CODEX_BIN``, each ``PATH`` entry of ``env``,
    then :data:`FALLBACK_LOCATIONS`. A Node wrapper found on the way is resolved
    to its native binary (kept as is when that cannot be found). Returns the
    first executable (or ``None``) and every place searched, in order.
    """
    found, searched = find_binary("codex", configured, BINARY_ENV, env, FALLBACK_LOCATIONS)
    return (_native(found) if found is not None else None), searched


def codex_version(binary: str, timeout: float = 5.0) -> str | None:
    """``binary --version`` (e.g. ``"codex-cli 0.169.0"``), or None if it fails."""
    return binary_version(binary, timeout)


def build_argv(binary: str) -> list[str]:
    """The argv of one session's app-server: JSON-RPC on stdio."""
    return [binary, "app-server"]


def build_env(
    base_env: Mapping[str, str],
    operator_env: Mapping[str, str],
    client_extra_env: Mapping[str, str],
    codex_home: str,
) -> dict[str, str]:
    """The app-server's environment.

    ``base_env`` (the daemon's own) minus :data:`INHERITED_CODEX_VARS`, then
    ``operator_env`` (trusted settings such as ``OPENAI_API_KEY``), then the
    client's already-filtered extra env, then ``CODEX_HOME``. Later layers win,
    except that ``CODEX_HOME`` is always the one corral chose.
    """
    env = {key: value for key, value in base_env.items() if key not in INHERITED_CODEX_VARS}
    env.update(operator_env)
    env.update(client_extra_env)
    env["CODEX_HOME"] = codex_home
    return env


def default_codex_home(state_dir: Path) -> Path:
    """The corral-owned CODEX_HOME under the provider's state directory."""
    return state_dir / "home"


def prepare_codex_home(home: Path, config_toml: str | None) -> Path:
    """Create the corral-owned ``home`` (mode 0700) and write ``config_toml`` into it.

    ``config.toml`` is replaced atomically, and only when its content changes;
    with ``config_toml`` None an existing file is left alone. Returns ``home``.
    """
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if config_toml is None:
        return home
    target = home / CONFIG_TOML
    try:
        if target.read_text(encoding="utf-8") == config_toml:
            return home
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".toml", dir=home)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(config_toml)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return home


def resolve_codex_home(
    operator_config: Mapping[str, object], state_dir: Path, env: Mapping[str, str]
) -> tuple[Path, bool]:
    """(CODEX_HOME, corral-owned?).

    ``provider_settings.codex.config.codexHome`` first (``~`` is the env's HOME),
    then ``CODEX_HOME`` in the operator's ``config.env``; both are the operator's
    and corral writes nothing there. Otherwise corral's own directory under
    ``state_dir`` (see :func:`default_codex_home`), where ``configToml`` goes.
    """
    configured = operator_config.get("codexHome")
    operator_env = operator_config.get("env")
    if not (isinstance(configured, str) and configured) and isinstance(operator_env, Mapping):
        configured = operator_env.get("CODEX_HOME")
    if isinstance(configured, str) and configured:
        expanded = expand_home(configured, env)
        if expanded is not None:
            return Path(expanded), False
    return default_codex_home(state_dir), True
