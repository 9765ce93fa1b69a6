"""Daemon configuration: endpoints, data dir and operator options, resolved once.

Each option comes from the first of: its command-line flag, its environment
variable, the config file ``$XDG_CONFIG_HOME/corral/config.toml``, the default;
:func:`resolve` records which one in ``DaemonConfig.sources`` (``corral config
show`` prints it). The file is strict: an unknown key, a value of the wrong type
or a bad value is a :class:`ConfigError` naming the key and the file, never
ignored. Its keys (:data:`OPTIONS`, plus two tables):

- ``rpc``, ``events`` (endpoints), ``data_dir``, ``log_level``, ``curve_dir``,
  ``insecure_tcp``, ``claude_bin``, ``codex_bin``;
- ``[settings]``: default values of the daemon settings (``settings.set`` still
  changes them; a stored value wins over the file's);
- ``pinned_settings``: settings keys whose value is the file's (or the default)
  and that clients may not change (e.g. ``provider_settings``).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.protocol import endpoints

__all__ = ["OPTIONS", "ConfigError", "DaemonConfig", "Option", "check_endpoint", "resolve"]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which value, where, and why."""


@dataclass(frozen=True)
class Option:
    """One configuration option: its file key, flag, environment variable and kind."""

    key: str
    kind: str  # "endpoint", "path", "level", "bool", "text", "mib"
    flag: str | None
    env: str | None
    help: str


OPTIONS: tuple[Option, ...] = (
    Option("rpc", "endpoint", "--rpc", "CORRAL_RPC", "RPC endpoint (ROUTER)"),
    Option("events", "endpoint", "--events", "CORRAL_EVENTS", "events endpoint (PUB)"),
    Option("data_dir", "path", "--data-dir", "CORRAL_DATA_DIR", "directory of corral.db"),
    Option("log_level", "level", "--log-level", "CORRAL_LOG_LEVEL", "DEBUG … CRITICAL"),
    Option("curve_dir", "path", "--curve-dir", "CORRAL_CURVE_DIR", "CURVE keys for tcp endpoints"),
    Option("insecure_tcp", "bool", "--insecure-tcp", None, "tcp on loopback without CURVE"),
    Option("claude_bin", "text", None, "CORRAL_CLAUDE_BIN", "the claude binary"),
    Option("codex_bin", "text", None, "CORRAL_CODEX_BIN", "the codex binary"),
    Option("db_max_mib", "mib", None, "CORRAL_DB_MAX_MIB", "cap on corral.db's size, in MiB"),
)
TABLE_KEYS = ("settings", "pinned_settings")
LEVEL_NAMES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class DaemonConfig:
    rpc_url: str
    events_url: str
    data_dir: Path
    runtime_dir: Path
    insecure_tcp: bool = False
    claude_bin: str | None = None
    log_level: str = "INFO"
    curve_dir: Path | None = None
    codex_bin: str | None = None
    db_max_mib: int | None = None
    """A cap on the database's size: beyond it writes fail as on a full disk."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """Default settings values from the file's ``[settings]`` table (validated)."""
    pinned_settings: tuple[str, ...] = ()
    """Settings keys clients may not change."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Where each option's value came from: ``flag``, ``env NAME``, ``file PATH``, ``default``."""
    config_file: Path | None = None

    @property
    def db_path(self) -> Path:
        return self.data_dir / endpoints.DB_FILE

    @property
    def binaries(self) -> dict[str, str]:
        """Provider binary paths by provider name (what providers get in their context)."""
        found = {"claude": self.claude_bin, "codex": self.codex_bin}
        return {name: path for name, path in found.items() if path}


def config_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: relative values are ignored
        base = os.path.join(env.get("HOME", "~"), ".config")
    return Path(os.path.expanduser(base)) / "corral" / "config.toml"


def load_file(path: Path) -> dict[str, Any]:
    """The file's table, or {} when there is no file; ConfigError if it cannot be read."""
    if not path.exists():
        return {}
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def _check_keys(doc: Mapping[str, Any], path: Path) -> None:
    known = [o.key for o in OPTIONS] + list(TABLE_KEYS)
    for key in doc:
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r} (known keys: {', '.join(known)})")


def _level(value: str, where: str) -> str:
    name = value.strip().upper()
    name = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(name, name)
    if name not in LEVEL_NAMES:
        raise ConfigError(f"{where}: unknown log level {value!r} (use {', '.join(LEVEL_NAMES)})")
    return name


def _path(value: str, where: str, *, relative_ok: bool) -> Path:
    if value == "" or "\x00" in value:
        raise ConfigError(f"{where}: must be a non-empty path")
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        if not relative_ok:
            raise ConfigError(f"{where}: must be an absolute path (or ~/...), got {value!r}")
        path = path.absolute()
    return path


def _settings_table(value: object, path: Path) -> dict[str, str]:
    from corral.actors import settings as settings_mod
    from corral.protocol.errors import InvalidParams

    if not isinstance(value, dict):
        raise ConfigError(f"{path}: settings: must be a table ([settings])")
    out: dict[str, str] = {}
    for key, raw in value.items():
        where = f"{path}: settings.{key}"
        if key not in settings_mod.DEFAULTS:
            known = ", ".join(settings_mod.DEFAULTS)
            raise ConfigError(f"{where}: unknown setting (known: {known})")
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise ConfigError(f"{where}: must be a string or an integer")
        try:
            out[key] = settings_mod.validate(key, str(raw))
        except InvalidParams as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
    return out


def _pinned(value: object, path: Path) -> tuple[str, ...]:
    from corral.actors import settings as settings_mod

    where = f"{path}: pinned_settings"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: must be a list of settings keys")
    for key in value:
        if key not in settings_mod.DEFAULTS:
            raise ConfigError(f"{where}: unknown setting {key!r}")
    return tuple(dict.fromkeys(value))


def resolve(
    *,
    rpc: str | None = None,
    events: str | None = None,
    data_dir: str | None = None,
    insecure_tcp: bool = False,
    log_level: str | None = None,
    curve_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> DaemonConfig:
    """The daemon's configuration from flags (the arguments), ``env`` and the file.

    Raises ConfigError naming the bad value and where it came from.
    """
    env = os.environ if env is None else env
    path = file if file is not None else config_file(env)
    doc = load_file(path)
    _check_keys(doc, path)
    runtime_dir = endpoints.default_runtime_dir(env)
    flags: dict[str, object] = {
        "rpc": rpc,
        "events": events,
        "data_dir": data_dir,
        "log_level": log_level,
        "curve_dir": curve_dir,
        "insecure_tcp": insecure_tcp or None,
    }
    defaults: dict[str, object] = {
        "rpc": endpoints.default_rpc_url(runtime_dir),
        "events": endpoints.default_events_url(runtime_dir),
        "data_dir": str(endpoints.default_data_dir(env)),
        "log_level": "INFO",
        "curve_dir": None,
        "insecure_tcp": False,
        "claude_bin": None,
        "codex_bin": None,
        "db_max_mib": None,
    }
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        value, source, where = _pick(option, flags.get(option.key), env, doc, path)
        if value is None:
            values[option.key], sources[option.key] = defaults[option.key], "default"
            continue
        values[option.key] = _typed(option, value, where, from_file=source.startswith("file "))
        sources[option.key] = source
    config = DaemonConfig(
        rpc_url=str(values["rpc"]),
        events_url=str(values["events"]),
        data_dir=Path(str(values["data_dir"])),
        runtime_dir=runtime_dir,
        insecure_tcp=bool(values["insecure_tcp"]),
        claude_bin=_opt_str(values["claude_bin"]),
        log_level=str(values["log_level"]),
        curve_dir=Path(str(values["curve_dir"])) if values["curve_dir"] else None,
        codex_bin=_opt_str(values["codex_bin"]),
        db_max_mib=int(str(values["db_max_mib"])) if values["db_max_mib"] else None,
        settings=_settings_table(doc["settings"], path) if "settings" in doc else {},
        pinned_settings=_pinned(doc["pinned_settings"], path) if "pinned_settings" in doc else (),
        sources=sources,
        config_file=path,
    )
    for key, url in (("rpc", config.rpc_url), ("events", config.events_url)):
        try:
            check_endpoint(url, config.insecure_tcp, curve=config.curve_dir is not None)
        except ConfigError as exc:
            raise ConfigError(f"{_where(key, sources[key])}: {exc}") from None
    return config


def _opt_str(value: object) -> str | None:
    return str(value) if value else None


def _where(key: str, source: str) -> str:
    option = next(o for o in OPTIONS if o.key == key)
    if source == "flag":
        return option.flag or key
    if source.startswith("env "):
        return source[len("env ") :]
    if source.startswith("file "):
        return f"{source[len('file ') :]}: {key}"
    return key


def _pick(
    option: Option, flag: object, env: Mapping[str, str], doc: Mapping[str, Any], path: Path
) -> tuple[object, str, str]:
    """(raw value, source, where to say it came from); value None for the default."""
    if flag is not None and flag != "":
        return flag, "flag", option.flag or option.key
    if option.env and env.get(option.env):
        return env[option.env], f"env {option.env}", option.env
    if option.key in doc:
        return doc[option.key], f"file {path}", f"{path}: {option.key}"
    return None, "default", option.key


def _typed(option: Option, value: object, where: str, *, from_file: bool) -> object:
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false")
        return value
    if option.kind == "mib":
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not text.isdigit() or not 1 <= int(text) <= 1 << 30:
            raise ConfigError(f"{where}: must be a whole number of MiB, 1 or more")
        return int(text)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: must be a string")
    if option.kind == "level":
        return _level(value, where)
    if option.kind == "path":
        # A relative path is relative to the working directory on the command line;
        # in the file it would depend on where the daemon was started: refused.
        return str(_path(value, where, relative_ok=not from_file))
    if option.kind == "endpoint":
        if not value.strip():
            raise ConfigError(f"{where}: must be an endpoint such as ipc:///path/rpc.sock")
        return value
    if value == "" or "\x00" in value:
        raise ConfigError(f"{where}: must be a non-empty string")
    return value


def check_endpoint(url: str, insecure_tcp: bool, *, curve: bool = False) -> None:
    """Refuse endpoints the contract forbids: tcp without CURVE, unless loopback + flag."""
    if url.startswith("ipc://"):
        path = url[len("ipc://") :]
        if len(path.encode()) > 107:
            raise ConfigError(f"ipc path too long for a unix socket: {path}")
        return
    if url.startswith("tcp://"):
        if curve:
            return
        host = url[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
        if not insecure_tcp:
            raise ConfigError(
                f"refusing {url}: a tcp endpoint needs CURVE authentication "
                "(--curve-dir DIR, keys from `corral keys generate`); "
                "or use ipc://, or --insecure-tcp on a loopback address"
            )
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ConfigError(f"refusing {url}: --insecure-tcp is allowed on loopback only")
        return
    if url.startswith("inproc://"):
        return
    raise ConfigError(f"unsupported endpoint {url!r} (use ipc:// or tcp://)")
