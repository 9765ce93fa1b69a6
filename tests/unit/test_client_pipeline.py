"""The sync client: typed errors per reason, pipelined calls (answers in any
order), and DaemonUnreachable when nobody answers in time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.protocol import errors
from corral.protocol.client import Client, DaemonUnreachable
from corral.protocol.transport import START_HINT, EseqTracker, camel, error_of
from tests.unit.test_protocol_client import RouterServer, answer, body, jsonrpc_handler, sock_dir

__all__ = ["sock_dir"]

REASONS: dict[str, type[errors.RpcError]] = {
    "parse_error": errors.ParseError,
    "invalid_request": errors.InvalidRequest,
    "too_large": errors.TooLarge,
    "method_not_found": errors.MethodNotFound,
    "invalid_params": errors.InvalidParams,
    "internal_error": errors.InternalError,
    "no_session": errors.NoSession,
    "session_running": errors.SessionRunning,
    "start_in_progress": errors.StartInProgress,
    "provider_unavailable": errors.ProviderUnavailable,
    "not_found": errors.NotFound,
    "overloaded": errors.Overloaded,
    "shutting_down": errors.ShuttingDown,
}


def reordering_handler(batch: int) -> Any:
    """Holds requests until ``batch`` arrived, then answers them in reverse order;
    ``fail`` requests get a session_running error."""
    held: list[list[bytes]] = []

    def handle(frames: list[bytes]) -> list[list[bytes]]:
        req = body(frames)
        if req.get("method") == "reason":
            reason = req["params"]["reason"]
            error = {"code": -32000, "message": f"it is {reason}", "data": {"reason": reason}}
            return [answer(frames, {"jsonrpc": "2.0", "id": req["id"], "error": error})]
        held.append(frames)
        if len(held) < batch:
            return []
        out = []
        for f in reversed(held):
            r = body(f)
            if r["method"] == "fail":
                error = {"code": -32002, "message": "busy", "data": {"reason": "session_running"}}
                reply = {"jsonrpc": "2.0", "id": r["id"], "error": error}
            else:
                reply = {"jsonrpc": "2.0", "id": r["id"], "result": {"n": r["params"]["n"]}}
            out.append(answer(f, reply))
        held.clear()
        return out

    return handle


@pytest.fixture
def reorder(sock_dir: Path) -> Iterator[RouterServer]:
    srv = RouterServer(f"ipc://{sock_dir}/rpc.sock", reordering_handler(3))
    yield srv
    srv.close()


def test_every_reason_has_its_exception(reorder: RouterServer) -> None:
    with Client(reorder.url, timeout=2) as client:
        for reason, cls in REASONS.items():
            with pytest.raises(cls) as info:
                client.call("reason", {"reason": reason})
            assert info.value.reason == reason and info.value.message == f"it is {reason}"
            assert isinstance(info.value, errors.RpcError)


def test_pipeline_collects_answers_given_in_reverse(reorder: RouterServer) -> None:
    with Client(reorder.url, timeout=2) as client:
        calls = [("echo", {"n": i}) for i in range(3)]
        assert client.pipeline(calls) == [{"n": 0}, {"n": 1}, {"n": 2}]
        rids = [client.submit("echo", {"n": i}) for i in (10, 11)]
        last = client.submit("echo", {"n": 12})
        assert client.result(last) == {"n": 12}  # the others' answers are kept meanwhile
        assert [client.result(r) for r in rids] == [{"n": 10}, {"n": 11}]
        with pytest.raises(KeyError):
            client.result(rids[0])


def test_pipeline_errors(reorder: RouterServer) -> None:
    with Client(reorder.url, timeout=2) as client:
        calls: list[tuple[str, dict[str, Any] | None]] = [
            ("echo", {"n": 1}),
            ("fail", {"n": 2}),
            ("echo", {"n": 3}),
        ]
        got = client.pipeline(calls, return_exceptions=True)
        assert got[0] == {"n": 1} and got[2] == {"n": 3}
        assert isinstance(got[1], errors.SessionRunning)
        with pytest.raises(errors.SessionRunning):
            client.pipeline(calls)
        assert client.pipeline(calls[:1] * 3) == [{"n": 1}] * 3  # nothing left over


def test_unreachable_daemon_raises_quickly_with_a_hint(sock_dir: Path) -> None:
    url = f"ipc://{sock_dir}/nobody.sock"
    with Client(url, timeout=0.2) as client:
        t0 = time.monotonic()
        with pytest.raises(DaemonUnreachable) as info:
            client.call("session.list")
        assert 0.15 < time.monotonic() - t0 < 1.5
        assert isinstance(info.value, TimeoutError)
        assert info.value.url == url and info.value.timeout == 0.2
        assert "session.list" in str(info.value) and url in str(info.value)
        assert info.value.hint == START_HINT
        with pytest.raises(DaemonUnreachable):
            client.pipeline([("a", None), ("b", None)], timeout=0.1)
        with pytest.raises(DaemonUnreachable):
            client.ping(timeout=0.05)


def test_timeout_for_a_silent_method(sock_dir: Path) -> None:
    srv = RouterServer(f"ipc://{sock_dir}/rpc.sock", jsonrpc_handler)
    try:
        with Client(srv.url, timeout=2) as client:
            with pytest.raises(DaemonUnreachable):
                client.call("silent", timeout=0.1)
            assert client.call("echo", {"x": 1}) == {"x": 1}
    finally:
        srv.close()


def test_wrappers_use_contract_names(sock_dir: Path) -> None:
    srv = RouterServer(f"ipc://{sock_dir}/rpc.sock", jsonrpc_handler)
    try:
        with Client(srv.url, timeout=2) as client:
            client.start("p", "mock", "hi", max_turns=2, provider_config={"a": 1}, model=None)
            sent = body(srv.received[-1])
            assert sent["params"] == {
                "projectId": "p",
                "provider": "mock",
                "prompt": "hi",
                "maxTurns": 2,
                "providerConfig": {"a": 1},
            }
            for call, method in (
                (lambda: client.sessions(project_id="p", limit=3), "session.list"),
                (lambda: client.health(), "health.get"),
                (lambda: client.notifications(5), "notifications.list"),
                (lambda: client.purge_session("s"), "session.purge"),
                (lambda: client.purge_project("p"), "project.purge"),
                (lambda: client.ack_conflicts("p"), "conflicts.ack"),
                (lambda: client.set_setting("k", "v"), "settings.set"),
            ):
                call()
                assert body(srv.received[-1])["method"] == method
            assert body(srv.received[-7])["params"] == {"projectId": "p", "limit": 3}
            assert body(srv.received[-6])["params"] == {}
    finally:
        srv.close()


def test_transport_helpers() -> None:
    assert camel("max_turns") == "maxTurns" and camel("projectId") == "projectId"
    assert error_of({"result": {}}) is None
    err = error_of({"error": {"code": -32001, "message": "m", "data": {"reason": "no_session"}}})
    assert isinstance(err, errors.NoSession)
    tracker = EseqTracker()
    assert not tracker.track({"boot": "a", "eseq": 5})
    assert not tracker.track({"boot": "a", "eseq": 6})
    assert tracker.track({"boot": "a", "eseq": 9}) and tracker.missed == 2
    assert not tracker.track({"boot": "a", "eseq": 10}, track_gaps=False)
    assert tracker.track({"boot": "b", "eseq": 3}) and tracker.restarts == 1
    assert not tracker.track({"no": "eseq"})
