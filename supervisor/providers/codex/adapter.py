"""The ``codex`` provider as the daemon loads it (entry point ``codex``).

One long-lived ``codex app-server`` (the native binary, JSON-RPC over stdio)
per live session, on a
:class:`~corral.supervisor.providers.handles.stdio_stream.StdioStreamHandle`
driven by :class:`~.protocol.CodexProtocol`. The process runs with a
``CODEX_HOME`` that corral owns (under its data directory) unless the operator
names one; ``provider_settings.codex.config.configToml`` is written there as
``config.toml``.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams, ProviderUnavailable
from corral.supervisor.providers.api import Provider
from corral.supervisor.providers.binaries import VersionCache
from corral.supervisor.providers.codex import launch, options
from corral.supervisor.providers.codex.protocol import CodexProtocol
from corral.supervisor.providers.handles.stdio_stream import StdioSpec, StdioStreamHandle


class CodexProvider(Provider):
    name = "codex"
    summary = "OpenAI Codex (one `codex app-server` JSON-RPC process per live session)"
    config_schema: ClassVar[dict[str, Any]] = options.CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._versions = VersionCache(launch.codex_version)

    def _binary(self, settings: Settings) -> tuple[str | None, list[str]]:
        configured = settings.provider_config(self.name).get("bin") or self.context.binaries.get(
            self.name
        )
        return launch.find_codex_binary(
            configured if isinstance(configured, str) else None, self.context.base_env
        )

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        binary, searched = self._binary(settings)
        if binary is None:
            return False, "codex not found; searched: " + ", ".join(searched)
        return True, self._versions.detail(binary, probe=probe)

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        return options.validate_config(config)

    def open(self, request: LaunchRequest) -> ProviderHandle:
        settings = Settings(request.settings)
        binary, searched = self._binary(settings)
        if binary is None:
            detail = "codex not found; searched: " + ", ".join(searched)
            raise ProviderUnavailable(detail, detail=detail)
        operator = settings.provider_config(self.name)
        try:
            session = options.session_options(
                request.options,
                operator,
                resume_thread_id=request.resume_id,
                default_model=settings.provider(self.name).get("defaultModel"),
            )
        except ValueError as exc:
            detail = f"provider_settings.codex.config: {exc}"
            raise ProviderUnavailable(detail, detail=detail) from None
        home, owned = launch.resolve_codex_home(
            operator, self.context.state_dir(self.name), self.context.base_env
        )
        config_toml = operator.get("configToml")
        if owned:
            launch.prepare_codex_home(home, config_toml if isinstance(config_toml, str) else None)
        operator_env = operator.get("env", {})
        env = launch.build_env(
            self.context.base_env,
            operator_env if isinstance(operator_env, dict) else {},
            request.options.get("extraEnv", {}),
            str(home),
        )
        cwd = request.options["cwd"]
        if not os.path.isdir(cwd):
            raise InvalidParams("cwd must be an existing absolute directory", field="cwd")
        spec = StdioSpec(launch.build_argv(binary), env, cwd, CodexProtocol(session))
        handle = StdioStreamHandle(spec, request, name=f"codex:{request.session_id}")
        handle.start(request.prompt)
        return handle
