"""What a provider is: the :class:`Provider` base every provider package subclasses.

A provider is one package under ``supervisor/providers/<name>/`` (or in a
third-party distribution), registered once as a ``corral.providers`` entry
point naming its :class:`Provider` subclass. The daemon builds one instance per
provider with a :class:`ProviderContext`, and asks it:

* whether it can run (:meth:`Provider.availability`),
* whether a ``providerConfig`` is valid (:meth:`Provider.validate_config`,
  driven by its JSON Schema :attr:`Provider.config_schema`, which ``rpc.describe``
  and the docs show too),
* to open a session's handle (:meth:`Provider.open`): a
  :class:`~corral.actors.ports.ProviderHandle` built on one of the reusable
  bases in ``supervisor/providers/handles/``.

Its words for the documentation live beside it in ``doc.md``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

from corral.actors.ports import LaunchRequest, ProviderHandle
from corral.actors.settings import Settings
from corral.protocol.errors import InvalidParams
from corral.protocol.schema import compile_schema

__all__ = ["Provider", "ProviderContext", "check_config"]

STRICT_EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "additionalProperties": False}


@dataclass(frozen=True)
class ProviderContext:
    """What the daemon gives every provider when it loads it."""

    data_dir: Path
    """The daemon's data directory; a provider keeps its own files under
    ``data_dir / "providers" / <name>``."""
    base_env: Mapping[str, str]
    """The environment provider processes start from (the daemon's)."""
    binaries: Mapping[str, str] = field(default_factory=dict)
    """Binary paths from the daemon's configuration, by provider name."""
    transcript: Callable[[str], list[dict[str, Any]]] = lambda _session_id: []
    """A session's stored AgentMessages, oldest first (read-only; for providers
    that resend the conversation, such as HTTP chat APIs)."""

    def state_dir(self, name: str) -> Path:
        return self.data_dir / "providers" / name


def check_config(schema: Mapping[str, Any], config: object) -> dict[str, Any]:
    """``config`` checked against ``schema``; InvalidParams names ``providerConfig.<key>``."""
    if not isinstance(config, dict):
        raise InvalidParams("providerConfig must be an object", field="providerConfig")
    compile_schema(schema)(config, "providerConfig")
    return dict(config)


class Provider(ABC):
    """One kind of agent. Subclasses set :attr:`name` and :attr:`config_schema`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    """One line for the documentation's provider table."""
    config_schema: ClassVar[dict[str, Any]] = STRICT_EMPTY_SCHEMA
    """JSON Schema of this provider's ``providerConfig`` (validation, describe, docs)."""

    def __init__(self, context: ProviderContext) -> None:
        self.context = context

    @abstractmethod
    def availability(self, settings: Settings, *, probe: bool = False) -> tuple[bool, str]:
        """(available, detail). Cheap unless ``probe`` (``daemon.info``), which may run
        the provider's binary or ask its server (bounded)."""

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """This provider's ``providerConfig`` JSON Schema (``config_schema`` unless a
        provider builds it from its own tables)."""
        return cls.config_schema

    def validate_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The checked ``providerConfig`` (raises InvalidParams naming the key)."""
        return check_config(self.schema(), config)

    @abstractmethod
    def open(self, request: LaunchRequest) -> ProviderHandle:
        """Start serving a session: a started handle that has taken ``request.prompt``.
        Raises ProviderUnavailable or OSError when it cannot."""

    @classmethod
    def doc(cls) -> str:
        """This provider's section of the documentation (its package's ``doc.md``)."""
        package = cls.__module__.rsplit(".", 1)[0]
        try:
            return resources.files(package).joinpath("doc.md").read_text(encoding="utf-8")
        except (FileNotFoundError, ModuleNotFoundError):
            return ""
