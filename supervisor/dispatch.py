"""The dispatch table: which thread answers each method, with which function.

Every method of the contract (:data:`corral.protocol.methods.METHODS`) has
exactly one :class:`Route` here, and every route names a method: the check
runs at import, so a method without a handler, or a handler without a method,
stops the daemon from starting (and fails the tests) at once. Routes name
real functions, so mypy sees every link; nothing is found by name.

Three targets, by what the answer needs:

* ``ROUTER``: answered on the router thread itself (no state beyond the
  router's: ping, describe, shutdown);
* ``READER``: a read of committed state on a reader actor's connection;
* ``REGISTRY``: anything that needs the live session map, guards or settings.

A route may also have a ``fast`` function the router tries first, on its own
thread, with no hop: ``session.get`` reads the
:class:`~corral.actors.board.SessionBoard`, and goes to the registry only when
the board cannot answer (it returns None).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from corral.actors import reader
from corral.actors.board import SessionBoard
from corral.actors.registry import RegistryActor
from corral.protocol import methods

FastPath = Callable[[SessionBoard, dict[str, Any]], dict[str, Any] | None]


class Target(StrEnum):
    ROUTER = "router"
    READER = "reader"
    REGISTRY = "registry"


class RouterContext(Protocol):
    """What a router-answered method may use."""

    @property
    def boot(self) -> str: ...

    def request_shutdown(self) -> None: ...


def ping(ctx: RouterContext, _params: dict[str, Any]) -> dict[str, Any]:
    return {"pong": True, "boot": ctx.boot, "time": int(time.time() * 1000)}


def describe(_ctx: RouterContext, _params: dict[str, Any]) -> dict[str, Any]:
    return methods.describe()


def shutdown(ctx: RouterContext, _params: dict[str, Any]) -> dict[str, Any]:
    ctx.request_shutdown()
    return {"stopping": True}


@dataclass(frozen=True)
class Route:
    target: Target
    function: Callable[..., Any]
    """ROUTER: ``f(ctx, params) -> result``; READER: ``f(connection, params) -> result``;
    REGISTRY: ``f(registry, params, reply_to) -> result or None`` (None: it answers later)."""
    fast: FastPath | None = None
    """Tried first on the router thread: the result, or None to hand the call on."""


def _router(f: Callable[[RouterContext, dict[str, Any]], dict[str, Any]]) -> Route:
    return Route(Target.ROUTER, f)


def _reader(f: reader.ReadFunction) -> Route:
    return Route(Target.READER, f)


def _registry(
    f: Callable[..., Any],
    fast: FastPath | None = None,
) -> Route:
    return Route(Target.REGISTRY, f, fast)


R = RegistryActor

TABLE: dict[str, Route] = {
    "daemon.ping": _router(ping),
    "daemon.info": _registry(R.rpc_daemon_info),
    "daemon.shutdown": _router(shutdown),
    "rpc.describe": _router(describe),
    "agent.start": _registry(R.rpc_agent_start),
    "agent.stop": _registry(R.rpc_agent_stop),
    "agent.prompt": _registry(R.rpc_agent_prompt),
    "session.get": _registry(R.rpc_session_get, fast=SessionBoard.session_get),
    "session.list": _reader(reader.list_sessions),
    "session.load": _reader(reader.newest_session),
    "session.messages.load": _reader(reader.messages_after),
    "session.restore": _registry(R.rpc_session_restore),
    "session.clear": _registry(R.rpc_session_clear),
    "session.purge": _registry(R.rpc_session_purge),
    "project.purge": _registry(R.rpc_project_purge),
    "settings.getAll": _registry(R.rpc_settings_getAll),
    "settings.set": _registry(R.rpc_settings_set),
    "health.get": _registry(R.rpc_health_get),
    "notifications.list": _registry(R.rpc_notifications_list),
    "conflicts.list": _registry(R.rpc_conflicts_list),
    "conflicts.ack": _registry(R.rpc_conflicts_ack),
    "approvals.list": _registry(R.rpc_approvals_list),
    "agent.approve": _registry(R.rpc_agent_approve),
}


class DispatchMismatch(RuntimeError):
    """The dispatch table and the contract's methods differ."""


def check(table: Mapping[str, Route], names: Mapping[str, object]) -> None:
    """Raise :class:`DispatchMismatch` unless every method has exactly one route."""
    missing = sorted(set(names) - set(table))
    extra = sorted(set(table) - set(names))
    if missing or extra:
        raise DispatchMismatch(
            f"methods without a handler: {missing}; handlers without a method: {extra}"
        )


check(TABLE, methods.METHODS)
