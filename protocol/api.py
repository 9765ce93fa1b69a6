"""One typed wrapper per contract method, shared by the sync and the asyncio client.

:class:`MethodsMixin` turns ``client.stop("p")`` into ``client.call("agent.stop",
{"projectId": "p"})``. It is generic in what ``call`` returns: the result itself for
:class:`~corral.protocol.client.Client`, an awaitable of it for
:class:`~corral.protocol.aio.AsyncClient`; so the same wrappers serve both
(``client.stop("p")`` and ``await aclient.stop("p")``). Options are accepted by
contract name or in snake_case (``max_turns`` for ``maxTurns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from corral.protocol.transport import camel

__all__ = ["MethodsMixin"]

R = TypeVar("R")


def _opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    return {camel(k): v for k, v in opts.items() if v is not None}


class MethodsMixin(Generic[R]):
    """Wrappers over ``self.call``; a subclass provides ``call``."""

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> R:  # pragma: no cover - provided by the client classes
        raise NotImplementedError

    # -- daemon ------------------------------------------------------------------

    def ping(self, timeout: float | None = None) -> R:
        """``daemon.ping``."""
        return self.call("daemon.ping", None, timeout)

    def info(self) -> R:
        """``daemon.info``."""
        return self.call("daemon.info")

    def describe(self) -> R:
        """``rpc.describe``."""
        return self.call("rpc.describe")

    def shutdown(self) -> R:
        """``daemon.shutdown``."""
        return self.call("daemon.shutdown")

    # -- agents ------------------------------------------------------------------

    def start(self, project_id: str, provider: str, prompt: str, **opts: Any) -> R:
        """``agent.start``; options by contract name or snake_case (``max_turns``)."""
        params = {"projectId": project_id, "provider": provider, "prompt": prompt}
        params.update(_opts(opts))
        return self.call("agent.start", params)

    def prompt(self, project_id: str, prompt: str) -> R:
        """``agent.prompt``."""
        return self.call("agent.prompt", {"projectId": project_id, "prompt": prompt})

    def stop(self, project_id: str) -> R:
        """``agent.stop``."""
        return self.call("agent.stop", {"projectId": project_id})

    # -- sessions ----------------------------------------------------------------

    def get_session(self, project_id: str) -> R:
        """``session.get``: ``{"session": Session or None}``."""
        return self.call("session.get", {"projectId": project_id})

    def load_session(self, project_id: str) -> R:
        """``session.load``: the newest stored session of the project."""
        return self.call("session.load", {"projectId": project_id})

    def sessions(self, **filters: Any) -> R:
        """``session.list`` (``project_id``, ``status``, ``limit``, ``before``)."""
        return self.call("session.list", _opts(filters))

    def messages(self, session_id: str, after_seq: int = 0, limit: int = 500) -> R:
        """``session.messages.load``."""
        return self.call(
            "session.messages.load",
            {"sessionId": session_id, "afterSeq": after_seq, "limit": limit},
        )

    def restore(self, project_id: str) -> R:
        """``session.restore``."""
        return self.call("session.restore", {"projectId": project_id})

    def clear(self, project_id: str) -> R:
        """``session.clear``."""
        return self.call("session.clear", {"projectId": project_id})

    def purge_session(self, session_id: str) -> R:
        """``session.purge``."""
        return self.call("session.purge", {"sessionId": session_id})

    def purge_project(self, project_id: str) -> R:
        """``project.purge``."""
        return self.call("project.purge", {"projectId": project_id})

    # -- settings, health, notifications, conflicts ------------------------------

    def settings(self) -> R:
        """``settings.getAll``."""
        return self.call("settings.getAll")

    def set_setting(self, key: str, value: str) -> R:
        """``settings.set``."""
        return self.call("settings.set", {"key": key, "value": value})

    def health(self, project_id: str | None = None) -> R:
        """``health.get``."""
        return self.call("health.get", _opts({"projectId": project_id}))

    def notifications(self, limit: int | None = None) -> R:
        """``notifications.list``."""
        return self.call("notifications.list", _opts({"limit": limit}))

    def conflicts(self, project_id: str | None = None) -> R:
        """``conflicts.list``."""
        return self.call("conflicts.list", _opts({"projectId": project_id}))

    def ack_conflicts(self, project_id: str) -> R:
        """``conflicts.ack``."""
        return self.call("conflicts.ack", {"projectId": project_id})
