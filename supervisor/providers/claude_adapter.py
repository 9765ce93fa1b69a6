"""The `claude` provider: Claude Code in one long-lived stream-json process.

Launch facts (binary discovery, flags, environment) live in
``supervisor/providers/claude.py``; its output is read by
``supervisor/providers/claude_stream.py``. This adapter binds them to a
session's options and the operator's ``provider_settings.claude``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from corral.actors.ports import LaunchRequest
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams, ProviderUnavailable
from corral.supervisor.providers import claude_stream
from corral.supervisor.providers.base import LaunchSpec, ProviderAdapter
from corral.supervisor.providers.claude import (
    ClaudeLaunchOptions,
    build_argv,
    build_env,
    claude_version,
    find_claude_binary,
)

CONFIG_KEYS = {"appendSystemPrompt": bool}
VERSION_CACHE_S = 60.0


class ClaudeAdapter(ProviderAdapter):
    name = "claude"

    def __init__(self, configured_bin: str | None = None) -> None:
        self._configured = configured_bin
        self._lock = threading.Lock()
        self._versions: dict[str, tuple[float, str | None]] = {}

    def _binary(self, settings: Settings) -> tuple[str | None, list[str]]:
        configured = settings.provider_config("claude").get("bin") or self._configured
        return find_claude_binary(configured if isinstance(configured, str) else None, os.environ)

    def _version(self, binary: str) -> str | None:
        with self._lock:
            cached = self._versions.get(binary)
            if cached is not None and time.monotonic() - cached[0] < VERSION_CACHE_S:
                return cached[1]
        found = claude_version(binary)
        with self._lock:
            self._versions[binary] = (time.monotonic(), found)
        return found

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        """Found or not (cheap: agent.start asks on the registry thread); the
        version runs ``claude --version`` only when probing (daemon.info)."""
        binary, searched = self._binary(settings)
        if binary is None:
            return False, "claude not found; searched: " + ", ".join(searched)
        found = self._version(binary) if probe else self._cached_version(binary)
        return True, f"{binary} ({found or 'version unknown'})"

    def _cached_version(self, binary: str) -> str | None:
        with self._lock:
            cached = self._versions.get(binary)
        return cached[1] if cached is not None else None

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, value in config.items():
            expected = CONFIG_KEYS.get(key)
            if expected is None:
                raise InvalidParams(
                    f"providerConfig.{key}: unknown key for claude", field=f"providerConfig.{key}"
                )
            if not isinstance(value, expected):
                raise InvalidParams(
                    f"providerConfig.{key}: must be a {expected.__name__}",
                    field=f"providerConfig.{key}",
                )
        return dict(config)

    def launch_spec(
        self, request: LaunchRequest, settings: Settings, base_env: Mapping[str, str]
    ) -> LaunchSpec:
        binary, searched = self._binary(settings)
        if binary is None:
            detail = "claude not found; searched: " + ", ".join(searched)
            raise ProviderUnavailable(detail, detail=detail)
        o = request.options
        opts = ClaudeLaunchOptions(
            model=o.get("model"),
            permission_mode=o.get("permissionMode"),
            max_turns=o.get("maxTurns"),
            system_prompt=o.get("systemPrompt"),
            append_system_prompt=bool(o.get("providerConfig", {}).get("appendSystemPrompt")),
            additional_directories=list(o.get("additionalDirectories", [])),
            worktree_name=o.get("worktreeName"),
            claude_config_dir=o.get("claudeConfigDir"),
            resume_session_id=request.resume_id,
            session_id=None if request.resume_id else request.session_id,
        )
        operator_env = settings.provider_config("claude").get("env", {})
        env = build_env(
            base_env,
            operator_env if isinstance(operator_env, dict) else {},
            o.get("extraEnv", {}),
            o.get("claudeConfigDir"),
        )
        return LaunchSpec(
            argv=build_argv(binary, opts),
            env=env,
            cwd=o["cwd"],
            encode_prompt=claude_stream.encode_user_message,
            encode_interrupt=lambda: claude_stream.encode_interrupt("corral-stop"),
            parser=claude_stream.ClaudeStreamParser(),
        )
