"""The ``ollama`` provider as the daemon loads it (entry point ``ollama``).

No process: a session is a :class:`OllamaSession` (its client, model and
conversation) whose turns run on a
:class:`~corral.supervisor.providers.handles.thread_stream.ThreadStreamHandle`
worker thread. The conversation is real multi-turn: a session that is opened
again (a prompt after the cleanup grace, a restore, a daemon restart) is given
its whole stored transcript back (:mod:`.history`).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import ProviderUnavailable
from corral.supervisor.providers.api import Provider
from corral.supervisor.providers.handles.thread_stream import Emit, ThreadStreamHandle
from corral.supervisor.providers.ollama import client as ollama_client
from corral.supervisor.providers.ollama import options as ollama_options
from corral.supervisor.providers.ollama.history import build_messages
from corral.supervisor.providers.ollama.tools import ToolBox
from corral.supervisor.providers.ollama.turn import init_item, run_turn

CHECK_CACHE_S = 5.0
"""How long a server check is reused by ``agent.start`` (a probe always asks)."""
START_CHECK_TIMEOUT_S = 1.0
"""Longest wait for the server's version when a session starts."""


class OllamaSession:
    """One session's turns against an Ollama server (a TurnRunner)."""

    def __init__(
        self,
        client: ollama_client.OllamaClient,
        model: str,
        config: ollama_options.OllamaConfig,
        history: list[dict[str, Any]],
        toolbox: ToolBox | None,
        session_id: str,
        cwd: str,
        max_rounds: int,
    ) -> None:
        self._client = client
        self._model = model
        self._config = config
        self._history = history
        self._toolbox = toolbox
        self._session_id = session_id
        self._cwd = cwd
        self._max_rounds = max_rounds
        self._announced = False

    def run_turn(self, prompt: str, emit: Emit, cancel: threading.Event) -> None:
        if not self._announced:
            self._announced = True
            init = init_item(self._model, self._cwd)
            init.provider_session_id = self._session_id
            emit([init])
        self._history.append({"role": "user", "content": prompt})
        result = run_turn(
            self._client,
            self._model,
            self._history,
            cancel=cancel,
            emit=emit,
            think=self._config.think,
            tools=self._toolbox if self._config.tools else None,
            options=self._config.options or None,
            keep_alive=self._config.keep_alive,
            max_rounds=self._max_rounds,
        )
        self._history.extend(result.messages)

    def close(self) -> None:
        self._client.close()


class OllamaProvider(Provider):
    name = "ollama"
    summary = "Ollama models through the official `ollama` client (in-process, no CLI)"
    config_schema: ClassVar[dict[str, Any]] = ollama_options.CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._checked: dict[str, tuple[float, str | None, str]] = {}

    def _host(self, settings: Settings) -> str:
        return ollama_client.resolve_host(
            settings.provider_config("ollama").get("host"), self.context.base_env
        )

    def _check(self, host: str, *, probe: bool) -> tuple[bool, str]:
        """(reachable, detail), cached for CHECK_CACHE_S unless probing."""
        now = time.monotonic()
        with self._lock:
            cached = self._checked.get(host)
        if cached is not None and not probe and now - cached[0] < CHECK_CACHE_S:
            version, detail = cached[1], cached[2]
        else:
            try:
                version = ollama_client.check_server(host, timeout=START_CHECK_TIMEOUT_S)
                detail = f"ollama {version} at {host}"
            except ProviderUnavailable as exc:
                version, detail = None, exc.message
            with self._lock:
                self._checked[host] = (now, version, detail)
        return version is not None, detail

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        """Asks the server for its version (bounded by START_CHECK_TIMEOUT_S and
        cached briefly, since ``agent.start`` asks on the registry thread)."""
        try:
            host = self._host(settings)
        except ProviderUnavailable as exc:
            return False, exc.message
        return self._check(host, probe=probe)

    def open(self, request: LaunchRequest) -> ProviderHandle:
        settings = Settings(request.settings)
        options = request.options
        host = self._host(settings)
        config = ollama_options.parse_config(options.get("providerConfig", {}))
        model = ollama_client.resolve_model(
            options.get("model"), settings.provider(self.name).get("defaultModel")
        )
        history = self._history(request, options.get("systemPrompt"))
        env = dict(self.context.base_env)
        env.update(options.get("extraEnv", {}))
        toolbox = ToolBox(
            options["cwd"],
            options.get("additionalDirectories", ()),
            permission_mode=options.get("permissionMode", "default"),
            env=env,
        )
        session = OllamaSession(
            ollama_client.make_client(host),
            model,
            config,
            history,
            toolbox,
            request.session_id,
            options["cwd"],
            int(options.get("maxTurns") or 25),
        )
        handle = ThreadStreamHandle(session, request, name=f"ollama:{request.session_id}")
        handle.start(request.prompt)
        return handle

    def _history(self, request: LaunchRequest, system_prompt: str | None) -> list[dict[str, Any]]:
        """The conversation so far: empty for a new session, else rebuilt from the
        store (without the prompt being sent now, which the turn adds)."""
        stored = self.context.transcript(request.session_id) if request.resume_id else []
        if (
            stored
            and stored[-1].get("role") == "user"
            and stored[-1].get("content") == (request.prompt)
        ):
            stored = stored[:-1]
        return build_messages(stored, system_prompt=system_prompt)
