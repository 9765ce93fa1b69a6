"""Daemon configuration: endpoints, data dir and operator options, resolved once.

Precedence (contract §1): command-line flags, then environment
(``CORRAL_RPC``, ``CORRAL_EVENTS``, ``CORRAL_DATA_DIR``), then the config file
(``$XDG_CONFIG_HOME/corral/config.toml``), then the defaults.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.protocol import endpoints


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass(frozen=True)
class DaemonConfig:
    rpc_url: str
    events_url: str
    data_dir: Path
    runtime_dir: Path
    insecure_tcp: bool = False
    claude_bin: str | None = None
    log_level: str = "INFO"

    @property
    def db_path(self) -> Path:
        return self.data_dir / endpoints.DB_FILE


def config_file(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: relative values are ignored
        base = os.path.join(env.get("HOME", "~"), ".config")
    return Path(os.path.expanduser(base)) / "corral" / "config.toml"


def load_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def resolve(
    *,
    rpc: str | None = None,
    events: str | None = None,
    data_dir: str | None = None,
    insecure_tcp: bool = False,
    env: Mapping[str, str] | None = None,
    file: Path | None = None,
) -> DaemonConfig:
    env = os.environ if env is None else env
    from_file = load_file(file if file is not None else config_file(env))
    runtime_dir = endpoints.default_runtime_dir(env)

    def pick(flag: str | None, env_key: str, file_key: str, default: str) -> str:
        if flag:
            return flag
        if env.get(env_key):
            return env[env_key]
        value = from_file.get(file_key)
        if isinstance(value, str) and value:
            return value
        return default

    rpc_url = pick(rpc, "CORRAL_RPC", "rpc", endpoints.default_rpc_url(runtime_dir))
    events_url = pick(events, "CORRAL_EVENTS", "events", endpoints.default_events_url(runtime_dir))
    data = pick(data_dir, "CORRAL_DATA_DIR", "data_dir", str(endpoints.default_data_dir(env)))
    insecure = insecure_tcp or bool(from_file.get("insecure_tcp", False))
    claude_bin = env.get("CORRAL_CLAUDE_BIN") or from_file.get("claude_bin") or None
    config = DaemonConfig(
        rpc_url=rpc_url,
        events_url=events_url,
        data_dir=Path(os.path.expanduser(data)),
        runtime_dir=runtime_dir,
        insecure_tcp=insecure,
        claude_bin=claude_bin if isinstance(claude_bin, str) else None,
        log_level=str(from_file.get("log_level", env.get("CORRAL_LOG_LEVEL", "INFO"))),
    )
    for url in (config.rpc_url, config.events_url):
        check_endpoint(url, config.insecure_tcp)
    return config


def check_endpoint(url: str, insecure_tcp: bool) -> None:
    """Refuse endpoints the contract forbids (tcp without CURVE unless loopback + flag)."""
    if url.startswith("ipc://"):
        path = url[len("ipc://") :]
        if len(path.encode()) > 107:
            raise ConfigError(f"ipc path too long for a unix socket: {path}")
        return
    if url.startswith("tcp://"):
        host = url[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
        if not insecure_tcp:
            raise ConfigError(
                f"refusing {url}: tcp endpoints need CURVE authentication, which this "
                "corral does not offer yet; use ipc://, or --insecure-tcp on a loopback address"
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
