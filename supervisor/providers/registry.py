"""The provider registry: every ``corral.providers`` entry point, loaded once.

Names come from :func:`corral.protocol.providers.provider_entry_points` (the
same list the contract validates against); each entry point names a
:class:`~corral.supervisor.providers.api.Provider` subclass, built here with
the daemon's :class:`~corral.supervisor.providers.api.ProviderContext`. The
registry is what the actors see as their ``ProviderCatalog`` (availability,
``providerConfig`` checks) and ``ProviderLauncher`` (opening a session's
handle). Nothing outside a provider's package names a provider.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams, ProviderUnavailable
from corral.protocol.providers import provider_entry_points
from corral.supervisor.providers.api import Provider, ProviderContext

log = logging.getLogger("corral.providers")


def provider_classes() -> dict[str, type[Provider]]:
    """name → Provider class of every registered provider (an entry point that
    fails to load is logged and left out)."""
    classes: dict[str, type[Provider]] = {}
    for name, ep in provider_entry_points().items():
        try:
            cls = ep.load()
        except Exception:
            log.exception("provider %s: cannot load %s", name, ep.value)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            log.error("provider %s: %s is not a Provider class", name, ep.value)
            continue
        classes[name] = cls
    return classes


class ProviderRegistry:
    """The loaded providers (implements the actors' ProviderCatalog and ProviderLauncher)."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    @classmethod
    def load(cls, context: ProviderContext) -> ProviderRegistry:
        return cls({name: klass(context) for name, klass in provider_classes().items()})

    def names(self) -> tuple[str, ...]:
        return tuple(self._providers)

    def get(self, name: str) -> Provider | None:
        return self._providers.get(name)

    def availability(
        self, name: str, settings: dict[str, str], *, probe: bool = False
    ) -> tuple[bool, str]:
        provider = self._providers.get(name)
        if provider is None:
            return False, f"unknown provider {name!r}"
        try:
            return provider.availability(Settings(settings), probe=probe)
        except Exception as exc:
            log.exception("provider %s: availability check failed", name)
            return False, f"availability check failed: {exc}"

    def validate_config(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        provider = self._providers.get(name)
        if provider is None:
            raise InvalidParams(f"unknown provider {name!r}", field="provider")
        return provider.validate_config(config)

    def config_schemas(self) -> dict[str, dict[str, Any]]:
        return {name: p.schema() for name, p in self._providers.items()}

    def launch(self, request: LaunchRequest) -> ProviderHandle:
        provider = self._providers.get(request.provider)
        if provider is None:
            detail = f"unknown provider {request.provider!r}"
            raise ProviderUnavailable(detail, detail=detail)
        return provider.open(request)
