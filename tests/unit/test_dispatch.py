"""The dispatch table (supervisor/dispatch.py) and the router's hand-over of a
validated call (Router._dispatch), without binding a socket: the ROUTER socket
is a recorder and the registry and readers are fakes that record what they
were told."""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pykka
import pytest
import zmq

from corral.actors import reader
from corral.actors.board import SessionBoard
from corral.actors.messages import Request
from corral.actors.reader import Query
from corral.actors.registry import RegistryActor
from corral.protocol import envelope, methods
from corral.supervisor import dispatch, router
from corral.supervisor.dispatch import DispatchMismatch, Route, Target
from corral.supervisor.outbox import ReplyItem, RouterOutbox
from corral.supervisor.outbox import Route as ReplyRoute
from tests.support.contract import CONTRACT_METHODS

# ---------------------------------------------------------------- the table


def test_every_contract_method_has_exactly_one_route() -> None:
    assert set(dispatch.TABLE) == set(methods.METHODS) == CONTRACT_METHODS
    dispatch.check(dispatch.TABLE, methods.METHODS)  # the import-time check passes


def _route() -> Route:
    return Route(Target.ROUTER, dispatch.ping)


def test_check_refuses_a_method_without_a_handler() -> None:
    with pytest.raises(DispatchMismatch, match=r"without a handler: \['b.two'\]"):
        dispatch.check({"a.one": _route()}, {"a.one": object(), "b.two": object()})


def test_check_refuses_a_handler_without_a_method() -> None:
    with pytest.raises(DispatchMismatch, match=r"without a method: \['z.extra'\]"):
        dispatch.check({"a.one": _route(), "z.extra": _route()}, {"a.one": object()})


def test_check_accepts_matching_tables() -> None:
    dispatch.check({"a.one": _route()}, {"a.one": object()})


def _targets(target: Target) -> dict[str, Route]:
    return {name: route for name, route in dispatch.TABLE.items() if route.target is target}


def test_router_routes_are_ping_describe_and_shutdown() -> None:
    assert {name: r.function for name, r in _targets(Target.ROUTER).items()} == {
        "daemon.ping": dispatch.ping,
        "rpc.describe": dispatch.describe,
        "daemon.shutdown": dispatch.shutdown,
    }


def test_reader_routes_name_functions_of_the_reader_module() -> None:
    routes = _targets(Target.READER)
    assert set(routes) == {"session.list", "session.load", "session.messages.load"}
    for route in routes.values():
        fn = route.function
        assert getattr(reader, fn.__name__) is fn and fn.__module__ == reader.__name__
        assert list(inspect.signature(fn).parameters) == ["conn", "params"]


def test_registry_routes_name_registry_actor_methods() -> None:
    routes = _targets(Target.REGISTRY)
    assert set(routes) == CONTRACT_METHODS - set(_targets(Target.ROUTER)) - set(
        _targets(Target.READER)
    )
    for name, route in routes.items():
        fn = route.function
        assert fn.__name__.startswith("rpc_"), name
        assert getattr(RegistryActor, fn.__name__) is fn, name
        assert len(inspect.signature(fn).parameters) == 3, name  # self, params, reply_to


# ---------------------------------------------------------------- router-answered functions


@dataclass
class FakeContext:
    boot: str = "boot-1"
    shutdowns: int = 0

    def request_shutdown(self) -> None:
        self.shutdowns += 1


def test_ping_answers_the_boot_and_the_time() -> None:
    before = int(time.time() * 1000)
    result = dispatch.ping(FakeContext(), {})
    assert result["pong"] is True and result["boot"] == "boot-1"
    assert before <= result["time"] <= int(time.time() * 1000)


def test_describe_answers_the_contract() -> None:
    described = dispatch.describe(FakeContext(), {})
    assert described == methods.describe()
    assert set(described["methods"]) == CONTRACT_METHODS


def test_shutdown_asks_the_context_to_stop() -> None:
    ctx = FakeContext()
    assert dispatch.shutdown(ctx, {}) == {"stopping": True}
    assert ctx.shutdowns == 1


# ---------------------------------------------------------------- Router._dispatch


@dataclass
class Recorder:
    """Stands in for the registry actor or the reader pool."""

    told: list[Any] = field(default_factory=list)
    fail: Exception | None = None

    def tell(self, message: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.told.append(message)


@dataclass
class FakeSocket:
    sent: list[list[bytes]] = field(default_factory=list)

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)


@dataclass
class Rig:
    router: router.Router
    registry: Recorder
    readers: Recorder
    socket: FakeSocket
    shutdowns: list[bool]
    board: SessionBoard

    def dispatch(self, method: str, params: Any = None, rid: Any = 1, **route: Any) -> ReplyRoute:
        reply_route = ReplyRoute(b"peer", True, rid, **route)
        self.router._dispatch(envelope.Call(rid, method, params), reply_route)
        return reply_route

    def answers(self) -> list[Any]:
        out = []
        for frames in self.socket.sent:
            assert frames[:2] == [b"peer", b""]
            out.append(envelope.loads(frames[2]))
        return out

    def told(self) -> list[Any]:
        return self.registry.told + self.readers.told


@pytest.fixture
def rig() -> Iterator[Rig]:
    ctx: zmq.Context[Any] = zmq.Context()
    outbox = RouterOutbox()
    registry, readers, sock = Recorder(), Recorder(), FakeSocket()
    shutdowns: list[bool] = []
    board = SessionBoard()
    r = router.Router(
        ctx=ctx,
        rpc_url="ipc://unused",
        events_url="ipc://unused-events",
        outbox=outbox,
        registry=registry,
        readers=readers,
        boot="boot-x",
        on_shutdown=lambda: shutdowns.append(True),
        board=board,
    )
    r._rpc = cast(Any, sock)  # answers are recorded, no socket is bound
    try:
        yield Rig(r, registry, readers, sock, shutdowns, board)
    finally:
        outbox.close()
        ctx.term()


def error_of(answer: dict[str, Any]) -> tuple[int, str]:
    return answer["error"]["code"], answer["error"]["data"]["reason"]


def test_invalid_params_are_answered_in_place(rig: Rig) -> None:
    rig.dispatch("agent.start", {"projectId": "p", "provider": "mock"}, rid="a")
    rig.dispatch("no.such.method", {}, rid="b")
    rig.dispatch("session.list", {"limit": 0}, rid="c")
    first, second, third = rig.answers()
    assert first["id"] == "a" and error_of(first) == (-32602, "invalid_params")
    assert first["error"]["data"]["field"] == "prompt"
    assert second["id"] == "b" and error_of(second) == (-32601, "method_not_found")
    assert third["id"] == "c" and third["error"]["data"]["field"] == "limit"
    assert rig.told() == [] and rig.router._in_flight == 0


def test_reads_go_to_the_readers_with_defaults_filled(rig: Rig) -> None:
    for method in ("session.list", "session.load", "session.messages.load"):
        params = {"sessionId": "s"} if method == "session.messages.load" else {"projectId": "p"}
        route = rig.dispatch(method, params)
        query = rig.readers.told[-1]
        assert isinstance(query, Query)
        assert (query.handler, query.reply_to, query.method) == (
            dispatch.TABLE[method].function,
            route,
            method,
        )
    assert rig.readers.told[-1].params == {"sessionId": "s", "afterSeq": 0, "limit": 500}
    assert rig.registry.told == [] and rig.answers() == [] and rig.router._in_flight == 3


def test_the_rest_goes_to_the_registry(rig: Rig) -> None:
    registry_methods = sorted(m for m, r in _targets(Target.REGISTRY).items() if r.fast is None)
    for method in registry_methods:
        params = _valid_params(method)
        route = rig.dispatch(method, params)
        request = rig.registry.told[-1]
        assert isinstance(request, Request)
        assert request.handler is dispatch.TABLE[method].function
        assert (request.reply_to, request.method) == (route, method)
    assert [r.method for r in rig.registry.told] == registry_methods
    assert rig.readers.told == [] and rig.answers() == []


def test_only_session_get_has_a_fast_path() -> None:
    fast = {name: r.fast for name, r in dispatch.TABLE.items() if r.fast is not None}
    assert fast == {"session.get": SessionBoard.session_get}
    assert dispatch.TABLE["session.get"].target is Target.REGISTRY


class Alive(pykka.ThreadingActor):
    pass


def test_session_get_is_answered_from_the_board_or_handed_on(rig: Rig) -> None:
    session = {"sessionId": "s1", "status": "running", "lastSeqId": 3}
    actor = Alive.start()
    try:
        rig.dispatch("session.get", {"projectId": "nobody"}, rid=1)
        rig.board.open("p", "s1", actor)
        rig.board.make_current("p", "s1")
        waiting = rig.dispatch("session.get", {"projectId": "p"}, rid=2)  # nothing committed
        rig.board.committed("p", "s1", session)
        rig.dispatch("session.get", {"projectId": "p"}, rid=3)
    finally:
        actor.stop()
    assert rig.answers() == [
        {"jsonrpc": "2.0", "id": 1, "result": {"session": None}},
        {"jsonrpc": "2.0", "id": 3, "result": {"session": session}},
    ]
    (request,) = rig.registry.told
    assert (request.handler, request.reply_to) == (RegistryActor.rpc_session_get, waiting)
    assert rig.readers.told == [] and rig.router._in_flight == 1


def _valid_params(method: str) -> dict[str, Any]:
    samples: dict[str, dict[str, Any]] = {
        "agent.start": {"projectId": "p", "provider": "mock", "prompt": "go"},
        "agent.prompt": {"projectId": "p", "prompt": "more"},
        "session.purge": {"sessionId": "s"},
        "settings.set": {"key": "permission_mode", "value": "plan"},
        "agent.approve": {"projectId": "p", "approvalId": "a1", "decision": "allow"},
    }
    if method in samples:
        return samples[method]
    required = methods.METHODS[method].params.get("required", [])
    return {"projectId": "p"} if "projectId" in required else {}


def test_router_methods_are_answered_in_place(rig: Rig) -> None:
    rig.dispatch("daemon.ping", None, rid=7)
    (answer,) = rig.answers()
    assert answer["id"] == 7 and answer["result"]["boot"] == "boot-x"
    rig.dispatch("daemon.shutdown", {}, rid=8)
    assert rig.answers()[1] == {"jsonrpc": "2.0", "id": 8, "result": {"stopping": True}}
    assert rig.shutdowns == [True] and rig.router.stopping
    assert rig.told() == []


def test_starts_prompts_and_restores_are_refused_while_stopping(rig: Rig) -> None:
    rig.router.stopping = True
    for method in sorted(router.REFUSED_WHILE_STOPPING):
        rig.dispatch(method, _valid_params(method), rid=method)
    assert [(a["id"], error_of(a)) for a in rig.answers()] == [
        (m, (-32007, "shutting_down")) for m in sorted(router.REFUSED_WHILE_STOPPING)
    ]
    rig.dispatch("agent.stop", {"projectId": "p"})
    rig.dispatch("session.list", {})
    assert [type(m) for m in rig.told()] == [Request, Query]


def test_past_the_in_flight_cap_calls_are_answered_overloaded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router, "MAX_IN_FLIGHT", 2)
    first = rig.dispatch("settings.getAll", {}, rid=1)
    rig.dispatch("session.list", {}, rid=2)
    rig.dispatch("settings.getAll", {}, rid=3)
    rig.dispatch("session.list", {}, rid=4)
    rig.dispatch("daemon.ping", {}, rid=5)  # answered in place: never counted
    assert [(a["id"], "error" in a) for a in rig.answers()] == [(3, True), (4, True), (5, False)]
    assert error_of(rig.answers()[0]) == (-32006, "overloaded")
    assert len(rig.told()) == 2
    rig.router._deliver(ReplyItem(first, {"settings": {}}, None))  # one answer went out
    assert rig.answers()[-1] == {"jsonrpc": "2.0", "id": 1, "result": {"settings": {}}}
    rig.dispatch("settings.getAll", {}, rid=6)
    assert len(rig.told()) == 3 and rig.router._in_flight == 2


def test_a_failing_hand_over_is_answered_internal_error(rig: Rig) -> None:
    rig.registry.fail = RuntimeError("mailbox gone")
    rig.dispatch("settings.getAll", {}, rid=9)
    (answer,) = rig.answers()
    assert error_of(answer) == (-32603, "internal_error") and "mailbox gone" in str(answer)


def test_a_notification_is_never_answered(rig: Rig) -> None:
    rig.dispatch("agent.start", {}, rid=None, notification=True)
    rig.dispatch("daemon.ping", {}, rid=None, notification=True)
    rig.dispatch("settings.getAll", {}, rid=None, notification=True)
    assert rig.answers() == [] and len(rig.registry.told) == 1


def test_a_batch_is_answered_once_its_last_entry_is(rig: Rig) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "daemon.ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "session.list", "params": {}},
        {"jsonrpc": "2.0", "method": "daemon.ping"},
        {"jsonrpc": "2.0", "id": 3, "method": "agent.stop", "params": {}},
    ]
    rig.router._handle([b"peer", b"", envelope.dumps(batch)])
    assert rig.answers() == []  # the read is still out
    (query,) = rig.readers.told
    rig.router._deliver(ReplyItem(query.reply_to, {"sessions": []}, None))
    (answer,) = rig.answers()
    assert sorted(a["id"] for a in answer) == [1, 2, 3]
    by_id = {a["id"]: a for a in answer}
    assert by_id[2]["result"] == {"sessions": []} and error_of(by_id[3])[1] == "invalid_params"
