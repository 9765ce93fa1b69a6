"""The ``mock`` provider as the daemon loads it (entry point ``mock``).

It runs ``python -m corral.supervisor.providers.mock`` as a real child process
that speaks Claude Code's stream-json, so a mock session takes exactly the path
a Claude session takes: process, reader thread, Claude dialect (and its
permission prompts, for scripted calls with ``ask: true`` in a mode that can
ask), session actor, store, events. No network, no credentials.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams
from corral.supervisor.providers.api import Provider
from corral.supervisor.providers.claude.dialect import ClaudeDialect
from corral.supervisor.providers.handles.stdio_stream import StdioSpec, StdioStreamHandle
from corral.supervisor.providers.mock import config
from corral.supervisor.providers.mock.permissions import PERMISSION_MODES


class MockProvider(Provider):
    name = "mock"
    summary = "built-in simulated agent: no network, no credentials (demos and tests)"

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return config.config_schema()

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        return True, "built-in simulated agent"

    def validate_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        try:
            return config.validate_config(cfg)
        except config.MockConfigError as exc:
            raise InvalidParams(
                f"providerConfig.{exc.field}: {exc.message}", field=f"providerConfig.{exc.field}"
            ) from None

    def open(self, request: LaunchRequest) -> ProviderHandle:
        options = request.options
        argv = [
            sys.executable,
            "-m",
            "corral.supervisor.providers.mock",
            "--config",
            orjson.dumps(options.get("providerConfig", {})).decode(),
            "--state-dir",
            str(self.context.state_dir(self.name)),
            "--cwd",
            options["cwd"],
        ]
        if options.get("model"):
            argv += ["--model", options["model"]]
        if options.get("permissionMode") in PERMISSION_MODES:
            argv.append(f"--permission-mode={options['permissionMode']}")
        if request.resume_id:
            argv += ["--resume", request.resume_id]
        else:
            argv += ["--session-id", request.session_id]
        env = dict(self.context.base_env)
        env.update(options.get("extraEnv", {}))
        spec = StdioSpec(argv, env, options["cwd"], ClaudeDialect())
        handle = StdioStreamHandle(spec, request, name=f"mock:{request.session_id}")
        handle.start(request.prompt)
        return handle
