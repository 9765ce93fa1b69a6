"""Start guards of the registry: no double start, no start over a running session."""

from __future__ import annotations

import threading

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import RpcError, SessionRunning
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import start_mock, wait_status


def test_concurrent_starts_give_exactly_one_success(daemon: DaemonProcess) -> None:
    outcomes: list[object] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def attempt() -> None:
        with daemon.client() as c:
            barrier.wait(5)
            try:
                result: object = start_mock(c, "race", hang=True)
            except RpcError as exc:
                result = exc.data["reason"]
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    successes = [o for o in outcomes if isinstance(o, dict)]
    refusals = [o for o in outcomes if not isinstance(o, dict)]
    assert len(outcomes) == 4
    assert len(successes) == 1
    assert set(refusals) <= {"start_in_progress", "session_running"}
    with daemon.client() as c:
        listed = c.call("session.list", {"projectId": "race"})["sessions"]
        assert [s["sessionId"] for s in listed] == [successes[0]["sessionId"]]  # type: ignore[index]


def test_batch_of_two_starts_one_in_progress(client: Client) -> None:
    params = {"projectId": "b", "provider": "mock", "prompt": "x", "providerConfig": {"hang": True}}
    responses = client.call_batch([("agent.start", params), ("agent.start", params)])
    ok = [r for r in responses if "result" in r]
    errors = [r["error"]["data"]["reason"] for r in responses if "error" in r]
    assert len(ok) == 1
    assert errors == ["start_in_progress"]


def test_start_over_running_session_is_refused(client: Client, subscriber: Subscriber) -> None:
    first = start_mock(client, "p", hang=True)
    with pytest.raises(SessionRunning) as info:
        start_mock(client, "p")
    assert info.value.code == -32002
    # the running session is untouched
    current = client.call("session.get", {"projectId": "p"})["session"]
    assert current["sessionId"] == first["sessionId"] and current["status"] == "running"
    # once it is stopped, a new start replaces it
    client.call("agent.stop", {"projectId": "p"}, timeout=15)
    second = start_mock(client, "p")
    assert second["sessionId"] != first["sessionId"]
    wait_status(subscriber, second["sessionId"])
    ids = {s["sessionId"] for s in client.call("session.list", {"projectId": "p"})["sessions"]}
    assert ids == {first["sessionId"], second["sessionId"]}


def test_failed_provider_exit_ends_in_error_then_restart_allowed(
    client: Client, subscriber: Subscriber
) -> None:
    started = start_mock(client, "f", failAfter=3)
    status = wait_status(subscriber, started["sessionId"])
    assert status["status"] == "error"
    assert "exited with code 1" in status["error"]
    again = start_mock(client, "f")
    assert wait_status(subscriber, again["sessionId"])["status"] == "done"
