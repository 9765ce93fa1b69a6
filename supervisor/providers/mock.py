"""The `mock` provider: corral's built-in simulated agent.

It runs ``supervisor/providers/mock_agent.py`` as a real child process that
speaks Claude Code's stream-json, so a mock session takes exactly the path a
Claude session takes: process, reader thread, Claude stream parser, session
actor, store, events. No network, no credentials.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import orjson
from corral.actors.ports import LaunchRequest
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams
from corral.supervisor.providers import claude_stream, mock_agent
from corral.supervisor.providers.base import LaunchSpec, ProviderAdapter


class MockAdapter(ProviderAdapter):
    name = "mock"

    def __init__(self, state_dir: str) -> None:
        self._state_dir = state_dir

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        return True, "built-in simulated agent"

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        try:
            return mock_agent.validate_config(config)
        except mock_agent.MockConfigError as exc:
            raise InvalidParams(
                f"providerConfig.{exc.field}: {exc.message}", field=f"providerConfig.{exc.field}"
            ) from None

    def launch_spec(
        self, request: LaunchRequest, settings: Settings, base_env: Mapping[str, str]
    ) -> LaunchSpec:
        options = request.options
        argv = [
            sys.executable,
            "-m",
            "corral.supervisor.providers.mock_agent",
            "--config",
            orjson.dumps(options.get("providerConfig", {})).decode(),
            "--state-dir",
            self._state_dir,
            "--cwd",
            options["cwd"],
        ]
        if options.get("model"):
            argv += ["--model", options["model"]]
        if request.resume_id:
            argv += ["--resume", request.resume_id]
        else:
            argv += ["--session-id", request.session_id]
        env = dict(base_env)
        env.update(options.get("extraEnv", {}))
        return LaunchSpec(
            argv=argv,
            env=env,
            cwd=options["cwd"],
            encode_prompt=claude_stream.encode_user_message,
            encode_interrupt=lambda: claude_stream.encode_interrupt("corral-stop"),
            parser=claude_stream.ClaudeStreamParser(),
        )
