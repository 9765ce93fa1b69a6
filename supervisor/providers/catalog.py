"""The provider catalog and launcher: name → adapter, and starting processes.

The registry asks the catalog about availability and ``providerConfig``; a
session asks the launcher for a process. Providers this version cannot drive
yet answer ``provider_unavailable`` with a clear detail.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams, ProviderUnavailable
from corral.supervisor.providers.base import ProviderAdapter, StreamJsonHandle

NOT_YET = {
    "codex": "the codex provider is not supported by this corral version yet",
    "ollama": "the ollama provider is not supported by this corral version yet",
}


class Catalog:
    """Implements ``actors.ports.ProviderCatalog`` and ``ProviderLauncher``."""

    def __init__(
        self, adapters: Mapping[str, ProviderAdapter], base_env: Mapping[str, str] | None = None
    ) -> None:
        self._adapters = dict(adapters)
        self._base_env = dict(base_env if base_env is not None else os.environ)

    def availability(
        self, name: str, settings: dict[str, str], *, probe: bool = False
    ) -> tuple[bool, str]:
        adapter = self._adapters.get(name)
        if adapter is None:
            return False, NOT_YET.get(name, f"unknown provider {name!r}")
        return adapter.availability(Settings(settings), probe=probe)

    def validate_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        adapter = self._adapters.get(name)
        if adapter is None:
            if not isinstance(config, dict):
                raise InvalidParams("providerConfig must be an object", field="providerConfig")
            return config
        return adapter.validate_config(config)

    def launch(self, request: LaunchRequest) -> ProviderHandle:
        adapter = self._adapters.get(request.provider)
        if adapter is None:
            detail = NOT_YET.get(request.provider, "unknown provider")
            raise ProviderUnavailable(detail, detail=detail)
        spec = adapter.launch_spec(request, Settings(request.settings), self._base_env)
        handle = StreamJsonHandle(spec, request, name=f"{request.provider}:{request.session_id}")
        handle.start(request.prompt)
        return handle
