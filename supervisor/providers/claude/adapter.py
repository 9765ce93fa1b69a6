"""The ``claude`` provider: binds Claude Code's launch rules and stream to a session.

Launch facts (binary discovery, flags, environment) live in
:mod:`.launch`; output is read by :mod:`.stream`. A session's process is a
:class:`~corral.supervisor.providers.handles.stdio_stream.StdioStreamHandle`
speaking stream-json through :class:`~.dialect.ClaudeDialect`: prompts are user
lines on stdin (the CLI queues those that arrive mid-turn), an interrupt is a
``control_request``, and a permission prompt becomes an ``approval``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import ProviderUnavailable
from corral.supervisor.providers.api import Provider
from corral.supervisor.providers.binaries import VersionCache
from corral.supervisor.providers.claude.dialect import ClaudeDialect
from corral.supervisor.providers.claude.launch import (
    ClaudeLaunchOptions,
    build_argv,
    build_env,
    check_launch_options,
    claude_version,
    find_claude_binary,
)
from corral.supervisor.providers.handles.stdio_stream import StdioSpec, StdioStreamHandle

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "appendSystemPrompt": {
            "type": "boolean",
            "description": "true: `systemPrompt` is appended to Claude Code's own system "
            "prompt; false or absent: it replaces it",
        },
    },
}
CONFIG_KEYS = tuple(CONFIG_SCHEMA["properties"])


class ClaudeProvider(Provider):
    name = "claude"
    summary = "Claude Code (the `claude` CLI, one stream-json process per live session)"
    config_schema: ClassVar[dict[str, Any]] = CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._versions = VersionCache(claude_version)

    def _binary(self, settings: Settings) -> tuple[str | None, list[str]]:
        configured = settings.provider_config("claude").get("bin") or self.context.binaries.get(
            "claude"
        )
        return find_claude_binary(configured if isinstance(configured, str) else None, os.environ)

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        """Found or not (cheap: agent.start asks on the registry thread); the
        version runs ``claude --version`` only when probing (daemon.info)."""
        binary, searched = self._binary(settings)
        if binary is None:
            return False, "claude not found; searched: " + ", ".join(searched)
        return True, self._versions.detail(binary, probe=probe)

    def open(self, request: LaunchRequest) -> ProviderHandle:
        settings = Settings(request.settings)
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
        check_launch_options(opts)  # invalid_params before anything is spawned
        operator_env = settings.provider_config("claude").get("env", {})
        env = build_env(
            self.context.base_env,
            operator_env if isinstance(operator_env, dict) else {},
            o.get("extraEnv", {}),
            o.get("claudeConfigDir"),
        )
        spec = StdioSpec(build_argv(binary, opts), env, o["cwd"], ClaudeDialect())
        handle = StdioStreamHandle(spec, request, name=f"claude:{request.session_id}")
        handle.start(request.prompt)
        return handle
