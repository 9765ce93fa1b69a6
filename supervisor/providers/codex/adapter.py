"""The ``codex`` provider as the daemon loads it (entry point ``codex``).

Not driven by this corral version yet: it is registered (so its name is part of
the contract) and answers ``provider_unavailable`` with a clear detail.
"""

from __future__ import annotations

from typing import Any, ClassVar

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import ProviderUnavailable
from corral.supervisor.providers.api import Provider

NOT_YET = "the codex provider is not supported by this corral version yet"


class CodexProvider(Provider):
    name = "codex"
    summary = f"`agent.start` answers `provider_unavailable`: {NOT_YET}"
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        return False, NOT_YET

    def open(self, request: LaunchRequest) -> ProviderHandle:
        raise ProviderUnavailable(NOT_YET, detail=NOT_YET)
