"""Daemon settings: the keys of the contract, their defaults and validation.

Values are strings on the wire and in the database; typed accessors parse them.
The RegistryActor owns the live settings; this module is pure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from corral.protocol.errors import InvalidParams
from corral.protocol.providers import provider_names

PERMISSION_MODES = ("default", "acceptEdits", "bypassPermissions", "plan")
PROVIDERS = provider_names()

DEFAULTS: dict[str, str] = {
    "permission_mode": "default",
    "system_prompt_template": "",
    "default_cwd": "",
    "provider_settings": "{}",
    "session_retention_count": "5",
    "session_retention_days": "30",
    "stall_timeout_ms": "900000",
    "cleanup_grace_ms": "60000",
    "max_live_sessions": "256",
    "approval_timeout_ms": "0",
    "desktop_notifications": "on",
}


def _int_in(lo: int, hi: int | None) -> Callable[[str], None]:
    def check(value: str) -> None:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("must be an integer") from None
        if number < lo or (hi is not None and number > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
            raise ValueError(f"must be {bound}")

    return check


def _permission_mode(value: str) -> None:
    if value not in PERMISSION_MODES:
        raise ValueError(f"must be one of {', '.join(PERMISSION_MODES)}")


def _on_off(value: str) -> None:
    if value not in ("on", "off"):
        raise ValueError("must be on or off")


def _any_text(value: str) -> None:
    if len(value.encode()) > 4096:
        raise ValueError("must be at most 4 KiB")


def _absolute_dir(value: str) -> None:
    if value == "":
        return
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    if not os.path.isdir(value):
        raise ValueError("must be an existing directory")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _process_safe(value: object) -> bool:
    """A string a process can take as an argument or env value (no NUL)."""
    return isinstance(value, str) and "\x00" not in value


def _provider_settings(value: str) -> None:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    for name, entry in parsed.items():
        if name not in PROVIDERS:
            raise ValueError(f"unknown provider {name!r}")
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: must be an object")
        for key, item in entry.items():
            if key == "enabled" and not isinstance(item, bool):
                raise ValueError(f"{name}.enabled: must be a boolean")
            elif key == "defaultModel" and not _process_safe(item):
                raise ValueError(f"{name}.defaultModel: must be a string without NUL")
            elif key == "config" and not isinstance(item, dict):
                raise ValueError(f"{name}.config: must be an object")
            elif key not in ("enabled", "defaultModel", "config"):
                raise ValueError(f"{name}: unknown key {key!r}")
        config = entry.get("config", {})
        env = config.get("env")
        if env is not None and (
            not isinstance(env, dict)
            or not all(
                isinstance(k, str) and _ENV_NAME.fullmatch(k) and _process_safe(v)
                for k, v in env.items()
            )
        ):
            raise ValueError(f"{name}.config.env: must map variable names to strings without NUL")
        if "bin" in config and not (_process_safe(config["bin"]) and config["bin"]):
            raise ValueError(f"{name}.config.bin: must be a non-empty path without NUL")
        limits = config.get("contextLimits")
        if limits is not None and (
            not isinstance(limits, dict)
            or not all(
                isinstance(k, str)
                and k.strip()
                and isinstance(v, int)
                and not isinstance(v, bool)
                and v > 0
                for k, v in limits.items()
            )
        ):
            raise ValueError(
                f"{name}.config.contextLimits: must map model names to token counts >= 1"
            )


VALIDATORS: dict[str, Callable[[str], None]] = {
    "permission_mode": _permission_mode,
    "system_prompt_template": _any_text,
    "default_cwd": _absolute_dir,
    "provider_settings": _provider_settings,
    "session_retention_count": _int_in(1, 50),
    "session_retention_days": _int_in(1, 365),
    "stall_timeout_ms": _int_in(1000, None),
    "cleanup_grace_ms": _int_in(0, None),
    "max_live_sessions": _int_in(1, 10000),
    "approval_timeout_ms": _int_in(0, None),
    "desktop_notifications": _on_off,
}


def validate(key: str, value: str) -> str:
    """The value to store for `key`, or InvalidParams naming `key` or `value`."""
    if key not in VALIDATORS:
        raise InvalidParams(f"unknown setting {key!r}", field="key")
    try:
        VALIDATORS[key](value)
    except ValueError as exc:
        raise InvalidParams(f"setting {key}: {exc}", field="value") from None
    if key == "provider_settings":
        return orjson.dumps(orjson.loads(value)).decode()
    return (
        value.strip()
        if key
        in (
            "session_retention_count",
            "session_retention_days",
            "stall_timeout_ms",
            "cleanup_grace_ms",
            "max_live_sessions",
            "approval_timeout_ms",
        )
        else value
    )


def merged(
    stored: Mapping[str, str],
    defaults: Mapping[str, str] | None = None,
    pinned: frozenset[str] = frozenset(),
) -> dict[str, str]:
    """The contract's defaults, then the operator's (config file ``[settings]``),
    then stored values that are still valid, kept as they were given; a pinned
    key keeps the operator's (or the contract's) value whatever is stored."""
    out = dict(DEFAULTS)
    for layer in (defaults or {}, stored):
        for key, value in layer.items():
            if key in VALIDATORS and key not in (pinned if layer is stored else ()):
                try:
                    validate(key, value)
                except InvalidParams:
                    continue
                out[key] = value
    return out


class Settings:
    """Typed read access to one settings snapshot."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def int(self, key: str) -> int:
        return int(self.values[key])

    def provider(self, name: str) -> dict[str, Any]:
        parsed = orjson.loads(self.values.get("provider_settings") or "{}")
        entry = parsed.get(name, {}) if isinstance(parsed, dict) else {}
        return entry if isinstance(entry, dict) else {}

    def provider_config(self, name: str) -> dict[str, Any]:
        config = self.provider(name).get("config", {})
        return config if isinstance(config, dict) else {}

    def desktop_notifications(self) -> bool:
        """Whether notifications also go to the desktop (setting ``desktop_notifications``)."""
        return self.values.get("desktop_notifications", "on") != "off"

    def provider_enabled(self, name: str) -> bool:
        return self.provider(name).get("enabled", True) is not False
