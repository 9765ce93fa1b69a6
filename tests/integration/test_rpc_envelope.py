"""The JSON-RPC 2.0 envelope of a real daemon: parse errors, invalid requests,
size limits, batches, notifications, params validation and frame layouts.

Every request here goes through the daemon's ROUTER socket as raw bytes, so the
tests see exactly what any client in any language would see.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from corral.protocol.client import Client
from corral.protocol.envelope import dumps, loads
from corral.protocol.errors import InvalidParams
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll, start_mock

MIB = 1 << 20
PROMPT_MAX = 256 * 1024
STRING_MAX = 4 * 1024
INT64_MAX = 2**63 - 1

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


# --------------------------------------------------------------------------- helpers


def req(method: str, params: Any = None, rid: Any = 1) -> dict[str, Any]:
    """A request object (``rid=...`` omitted: a notification)."""
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not ...:
        out["id"] = rid
    if params is not None:
        out["params"] = params
    return out


def note(method: str, params: Any = None) -> dict[str, Any]:
    """A notification object (no id)."""
    return req(method, params, ...)


def raw(client: Client, payload: bytes, timeout: float = 5.0) -> Any:
    """Send one request frame as it is; the decoded reply (None if none came)."""
    return client.request_raw(payload, timeout=timeout)


def send(client: Client, obj: Any, timeout: float = 5.0) -> Any:
    return raw(client, dumps(obj), timeout)


def assert_error(reply: Any, code: int, reason: str, rid: Any = None) -> dict[str, Any]:
    """``reply`` is a JSON-RPC error response with this code, reason and id."""
    assert isinstance(reply, dict), reply
    assert reply.get("jsonrpc") == "2.0", reply
    assert "result" not in reply, reply
    assert reply["id"] == rid, reply
    error = reply["error"]
    assert error["code"] == code, reply
    assert isinstance(error["message"], str) and error["message"], reply
    assert error["data"]["reason"] == reason, reply
    return dict(error)


def assert_result(reply: Any, rid: Any) -> dict[str, Any]:
    assert isinstance(reply, dict), reply
    assert reply.get("jsonrpc") == "2.0", reply
    assert "error" not in reply, reply
    assert reply["id"] == rid, reply
    result: dict[str, Any] = reply["result"]
    return result


def settings_of(client: Client) -> dict[str, str]:
    settings: dict[str, str] = client.call("settings.getAll")["settings"]
    return settings


def assert_alive(client: Client) -> None:
    """The daemon still answers, with the expected id (no stray reply queued)."""
    reply = send(client, req("daemon.ping", rid="alive"))
    assert assert_result(reply, "alive")["pong"] is True


def raw_socket(daemon: DaemonProcess, kind: int) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(daemon.rpc_url)
    return sock


def replies_within(sock: zmq.Socket[Any], seconds: float) -> list[Any]:
    """Every reply a ``["", reply]`` DEALER socket receives within ``seconds``."""
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock.poll(int(left * 1000)):
            frames = sock.recv_multipart()
            assert len(frames) == 2 and frames[0] == b"", frames
            out.append(loads(frames[1]))
    return out


def each(cases: list[Any], check: Callable[..., None]) -> None:
    """Run ``check(*case.values)`` for every ``pytest.param`` case; report every failure."""
    failures: list[str] = []
    for case in cases:
        try:
            check(*case.values)
        except AssertionError as exc:
            failures.append(f"[{case.id}] {exc}")
    assert not failures, "\n".join(failures)


def by_id(responses: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    out: dict[Any, dict[str, Any]] = {}
    for r in responses:
        key = r["id"]
        assert key not in out or key is None, f"duplicate response id {key!r}"
        out[key] = r
    return out


# --------------------------------------------------------------------------- parse errors


PARSE_ERRORS: list[Any] = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"daemon.p\xffing"}', id="bad-utf8-inside"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping"', id="truncated"),
    pytest.param(b"", id="empty-frame"),
    pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
    pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"\\ud800"}', id="lone-surrogate"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="too-deep"),
]


def test_parse_errors(client: Client) -> None:
    def check(payload: bytes) -> None:
        assert_error(raw(client, payload), PARSE_ERROR, "parse_error", rid=None)

    each(PARSE_ERRORS, check)
    assert_alive(client)


# --------------------------------------------------------------------------- invalid requests


INVALID_REQUESTS: list[Any] = [
    # (payload object, id the error answer carries)
    pytest.param(42, None, id="number"),
    pytest.param("daemon.ping", None, id="string"),
    pytest.param(None, None, id="null"),
    pytest.param(True, None, id="bool"),
    pytest.param({"id": 9, "method": "daemon.ping"}, 9, id="missing-jsonrpc"),
    pytest.param({"jsonrpc": "1.0", "id": 9, "method": "daemon.ping"}, 9, id="jsonrpc-1.0"),
    pytest.param({"jsonrpc": 2.0, "id": 9, "method": "daemon.ping"}, 9, id="jsonrpc-number"),
    pytest.param({"jsonrpc": "2.0", "id": True, "method": "daemon.ping"}, None, id="id-bool"),
    pytest.param({"jsonrpc": "2.0", "id": [1], "method": "daemon.ping"}, None, id="id-array"),
    pytest.param({"jsonrpc": "2.0", "id": {"a": 1}, "method": "daemon.ping"}, None, id="id-object"),
    pytest.param({"jsonrpc": "2.0", "id": 9}, 9, id="missing-method"),
    pytest.param({"jsonrpc": "2.0", "id": 9, "method": 5}, 9, id="method-number"),
    pytest.param({"jsonrpc": "2.0", "id": 9, "method": None}, 9, id="method-null"),
    pytest.param({"jsonrpc": "2.0", "id": 9, "method": ["daemon.ping"]}, 9, id="method-array"),
    pytest.param(
        {"jsonrpc": "2.0", "id": 9, "method": "daemon.ping", "extra": 1}, 9, id="unknown-member"
    ),
    # not well-formed, so answered even without an id (it cannot be a notification)
    pytest.param({"jsonrpc": "2.0", "method": 7}, None, id="no-id-method-number"),
]


def test_invalid_requests(client: Client) -> None:
    def check(payload: Any, rid: Any) -> None:
        assert_error(send(client, payload), INVALID_REQUEST, "invalid_request", rid=rid)

    each(INVALID_REQUESTS, check)
    assert_alive(client)


def test_id_kinds_are_echoed_and_null_id_is_answered(client: Client) -> None:
    for rid in ("abc", 0, -7, 2.5, ""):
        assert assert_result(send(client, req("daemon.ping", rid=rid)), rid)["pong"] is True
    # id null is a request (it has an id member), not a notification: it is answered
    reply = raw(client, b'{"jsonrpc":"2.0","id":null,"method":"daemon.ping"}')
    assert assert_result(reply, None)["pong"] is True
    # params may be omitted or null for a method without params
    assert assert_result(send(client, req("daemon.ping", rid=3)), 3)["pong"] is True
    reply = raw(client, b'{"jsonrpc":"2.0","id":4,"method":"daemon.ping","params":null}')
    assert assert_result(reply, 4)["pong"] is True


# --------------------------------------------------------------------------- size limit


def _padded_ping(size: int, rid: int) -> bytes:
    head = dumps(req("daemon.ping", rid=rid))
    return head + b" " * (size - len(head))


def test_request_of_exactly_one_mib_is_served(client: Client) -> None:
    payload = _padded_ping(MIB, 1)
    assert len(payload) == MIB
    assert assert_result(raw(client, payload), 1)["pong"] is True


def test_request_over_one_mib_is_too_large(client: Client) -> None:
    payload = _padded_ping(MIB + 1, 2)
    assert_error(raw(client, payload), INVALID_REQUEST, "too_large", rid=None)
    # a batch counts as one frame
    entry = req("daemon.ping", {}, rid=1)
    batch = [entry] * 30
    batch_payload = dumps(batch)[:-1] + b" " * (MIB + 1 - len(dumps(batch))) + b"]"
    assert len(batch_payload) == MIB + 1
    assert_error(raw(client, batch_payload), INVALID_REQUEST, "too_large", rid=None)
    # a big prompt inside an oversize frame never reaches validation or a session
    big = dumps(req("agent.start", {"projectId": "p", "provider": "mock", "prompt": "x" * MIB}))
    assert_error(raw(client, big), INVALID_REQUEST, "too_large", rid=None)
    assert client.call("session.list")["sessions"] == []
    assert_alive(client)


def test_frame_beyond_transport_limit_does_not_hurt_the_daemon(
    daemon: DaemonProcess, client: Client
) -> None:
    # Frames beyond the transport's own cap (16 MiB) are cut off by ZeroMQ with
    # the connection, before the daemon can answer; the daemon itself goes on.
    with daemon.client(timeout=2.0) as other:
        other.ping()
        assert other.send_raw([b"", b" " * (17 * MIB)], timeout=1.0) is None
    assert daemon.proc is not None and daemon.proc.poll() is None
    assert_alive(client)
    with daemon.client(timeout=5.0) as fresh:
        assert fresh.ping()["pong"] is True


# --------------------------------------------------------------------------- batches


def test_batch_mixed_calls_notifications_and_invalid_entries(client: Client) -> None:
    batch: list[Any] = [
        req("daemon.ping", rid=1),
        note("settings.set", {"key": "cleanup_grace_ms", "value": "1234"}),
        {"foo": "bar"},
        req("no.such.method", rid=3),
        req("daemon.info", rid="x"),
        req("session.list", {"limit": 0}, rid=4),
        note("no.such.method"),
        req("session.get", {"projectId": "nope"}, rid=5),
        7,
    ]
    reply = send(client, batch)
    assert isinstance(reply, list), reply
    # one response per non-notification entry; invalid entries are answered with id null
    assert len(reply) == 7
    assert sorted(str(r["id"]) for r in reply) == sorted(["1", "3", "x", "4", "5", "None", "None"])
    nulls = [r for r in reply if r["id"] is None]
    for r in nulls:
        assert_error(r, INVALID_REQUEST, "invalid_request", rid=None)
    responses = by_id([r for r in reply if r["id"] is not None])
    assert assert_result(responses[1], 1)["pong"] is True
    assert_error(responses[3], METHOD_NOT_FOUND, "method_not_found", rid=3)
    assert assert_result(responses["x"], "x")["boot"] == client.ping()["boot"]
    err = assert_error(responses[4], INVALID_PARAMS, "invalid_params", rid=4)
    assert err["data"]["field"] == "limit"
    assert assert_result(responses[5], 5) == {"session": None}
    # the notification in the batch was executed
    assert settings_of(client)["cleanup_grace_ms"] == "1234"
    assert_alive(client)


def test_batch_of_non_objects_answers_each_entry(client: Client) -> None:
    reply = send(client, [1, "two", None])
    assert isinstance(reply, list) and len(reply) == 3
    for r in reply:
        assert_error(r, INVALID_REQUEST, "invalid_request", rid=None)


def test_empty_batch_is_invalid_request(client: Client) -> None:
    reply = raw(client, b"[]")
    assert isinstance(reply, dict)  # one error object, not an array
    assert_error(reply, INVALID_REQUEST, "invalid_request", rid=None)


def test_batch_of_64_is_served_and_65_is_refused(client: Client) -> None:
    reply = send(client, [req("daemon.ping", rid=i) for i in range(64)])
    assert isinstance(reply, list)
    assert sorted(r["id"] for r in reply) == list(range(64))
    assert all(r["result"]["pong"] is True for r in reply)

    too_many = [
        req("settings.set", {"key": "cleanup_grace_ms", "value": "5"}, rid=i) for i in range(65)
    ]
    reply = send(client, too_many)
    assert isinstance(reply, dict)
    assert_error(reply, INVALID_REQUEST, "invalid_request", rid=None)
    # nothing of a refused batch is executed
    assert settings_of(client)["cleanup_grace_ms"] == "60000"


def test_batch_of_only_notifications_gets_no_response_but_runs(daemon: DaemonProcess) -> None:
    batch = [
        note("settings.set", {"key": "cleanup_grace_ms", "value": "4321"}),
        note("settings.set", {"key": "permission_mode", "value": "plan"}),
        note("daemon.ping"),
    ]
    sock = raw_socket(daemon, zmq.DEALER)
    try:
        sock.send_multipart([b"", dumps(batch)])
        sock.send_multipart([b"", dumps(req("settings.getAll", rid="after"))])
        # the only answer on this socket is the one to the request with an id
        replies = replies_within(sock, 0.8)
    finally:
        sock.close()
    assert [r["id"] for r in replies] == ["after"]
    settings = assert_result(replies[0], "after")["settings"]
    assert settings["cleanup_grace_ms"] == "4321" and settings["permission_mode"] == "plan"


def test_notification_is_executed_without_response(daemon: DaemonProcess) -> None:
    sock = raw_socket(daemon, zmq.DEALER)
    try:
        sock.send_multipart(
            [b"", dumps(note("settings.set", {"key": "stall_timeout_ms", "value": "5000"}))]
        )
        # a notification of an unknown method, or with bad params, gets no answer either
        sock.send_multipart([b"", dumps(note("no.such.method"))])
        sock.send_multipart(
            [b"", dumps(note("settings.set", {"key": "stall_timeout_ms", "value": "1"}))]
        )
        sock.send_multipart([b"", dumps(req("settings.getAll", rid="next"))])
        replies = replies_within(sock, 0.8)
    finally:
        sock.close()
    assert [r["id"] for r in replies] == ["next"]
    assert assert_result(replies[0], "next")["settings"]["stall_timeout_ms"] == "5000"


# --------------------------------------------------------------------------- methods and params


def test_unknown_methods(client: Client) -> None:
    # includes the name of an internal query, which must not be reachable
    for method in ["no.such.method", "", "Daemon.Ping", "daemon.ping ", "session.get#byId", "rpc"]:
        reply = send(client, req(method, {"sessionId": "s"}, rid=11))
        assert_error(reply, METHOD_NOT_FOUND, "method_not_found", rid=11)


BASE_START = {"projectId": "p", "provider": "mock", "prompt": "hi"}

BAD_PARAMS: list[Any] = [
    # (method, params, first bad field)
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": {"turns": 0}},
        "providerConfig.turns",
        id="turns-zero",
    ),
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": {"turns": "2"}},
        "providerConfig.turns",
        id="turns-string",
    ),
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": {"hang": 1}},
        "providerConfig.hang",
        id="hang-int",
    ),
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": {"bogus": 1}},
        "providerConfig.bogus",
        id="providerConfig-unknown",
    ),
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": {"delayMs": -1}},
        "providerConfig.delayMs",
        id="delay-negative",
    ),
    pytest.param(
        "agent.start",
        {**BASE_START, "providerConfig": []},
        "providerConfig",
        id="providerConfig-array",
    ),
    pytest.param("agent.start", {**BASE_START, "projectId": "-p"}, "projectId", id="pattern"),
    pytest.param("agent.start", {**BASE_START, "bogus": 1}, "bogus", id="extra-param"),
    pytest.param("agent.start", {**BASE_START, "prompt": ""}, "prompt", id="prompt-empty"),
    pytest.param(
        "agent.start", {"projectId": "p", "provider": "mock"}, "prompt", id="prompt-missing"
    ),
    pytest.param("agent.start", {**BASE_START, "provider": "gpt"}, "provider", id="provider"),
    pytest.param("agent.start", {**BASE_START, "maxTurns": 0}, "maxTurns", id="maxTurns"),
    pytest.param("agent.start", {**BASE_START, "maxTurns": True}, "maxTurns", id="maxTurns-bool"),
    pytest.param(
        "agent.start",
        {**BASE_START, "permissionMode": "yolo"},
        "permissionMode",
        id="permissionMode",
    ),
    pytest.param(
        "agent.start", {**BASE_START, "extraEnv": {"1X": "v"}}, "extraEnv.1X", id="env-name"
    ),
    pytest.param("agent.start", {**BASE_START, "extraEnv": {"X": 1}}, "extraEnv.X", id="env-value"),
    pytest.param(
        "agent.start",
        {**BASE_START, "additionalDirectories": ["/tmp", ""]},
        "additionalDirectories.1",
        id="additionalDirectories",
    ),
    pytest.param("agent.start", {**BASE_START, "cwd": "relative/dir"}, "cwd", id="cwd-relative"),
    pytest.param(
        "agent.start", {**BASE_START, "cwd": "/no/such/dir/here"}, "cwd", id="cwd-missing"
    ),
    pytest.param("agent.stop", {}, "projectId", id="stop-missing"),
    pytest.param("agent.prompt", {"projectId": "p", "prompt": ""}, "prompt", id="prompt"),
    pytest.param("session.list", {"limit": 0}, "limit", id="list-limit-0"),
    pytest.param("session.list", {"limit": 501}, "limit", id="list-limit-501"),
    pytest.param("session.list", {"limit": 1.5}, "limit", id="list-limit-float"),
    pytest.param("session.list", {"status": "zombie"}, "status", id="list-status"),
    pytest.param("session.list", {"before": -1}, "before", id="list-before"),
    pytest.param(
        "session.messages.load", {"sessionId": "s", "limit": 5001}, "limit", id="messages-limit"
    ),
    pytest.param(
        "session.messages.load",
        {"sessionId": "s", "afterSeq": -1},
        "afterSeq",
        id="messages-afterSeq",
    ),
    pytest.param("session.messages.load", {"sessionId": ""}, "sessionId", id="sessionId-empty"),
    pytest.param("session.messages.load", {}, "sessionId", id="sessionId-missing"),
    pytest.param("notifications.list", {"limit": 101}, "limit", id="notifications-limit"),
    pytest.param("notifications.list", {"limit": 0}, "limit", id="notifications-limit-0"),
    pytest.param("daemon.ping", {"x": 1}, "x", id="ping-extra"),
    pytest.param("settings.set", {"key": "nope", "value": "1"}, "key", id="settings-key"),
    pytest.param(
        "settings.set", {"key": "max_live_sessions", "value": 5}, "value", id="settings-value-type"
    ),
    pytest.param(
        "settings.set",
        {"key": "max_live_sessions", "value": "0"},
        "value",
        id="settings-value-range",
    ),
    pytest.param("health.get", {"projectId": "a/b"}, "projectId", id="health-projectId"),
    pytest.param("conflicts.ack", {}, "projectId", id="ack-missing"),
    pytest.param("session.purge", {"sessionId": 5}, "sessionId", id="purge-type"),
]


def test_invalid_params_name_the_first_bad_field(client: Client) -> None:
    def check(method: str, params: dict[str, Any], field: str) -> None:
        reply = send(client, req(method, params, rid=21))
        error = assert_error(reply, INVALID_PARAMS, "invalid_params", rid=21)
        assert error["data"]["field"] == field, error

    each(BAD_PARAMS, check)
    assert client.call("session.list") == {"sessions": []}


def test_first_bad_field_follows_the_request_order(client: Client) -> None:
    payload = (
        b'{"jsonrpc":"2.0","id":1,"method":"agent.start","params":'
        b'{"zzz":1,"projectId":"p","provider":"mock","prompt":""}}'
    )
    assert (
        assert_error(raw(client, payload), INVALID_PARAMS, "invalid_params", 1)["data"]["field"]
        == "zzz"
    )
    payload = (
        b'{"jsonrpc":"2.0","id":2,"method":"agent.start","params":'
        b'{"prompt":"","projectId":"p","provider":"mock","zzz":1}}'
    )
    assert (
        assert_error(raw(client, payload), INVALID_PARAMS, "invalid_params", 2)["data"]["field"]
        == "prompt"
    )


def test_params_must_be_an_object(client: Client) -> None:
    # an array is by-position params (corral takes them by name only); a string or a
    # number is not a JSON-RPC 2.0 request at all (-32600), answered with its id
    reply = send(client, req("session.get", [1, 2], rid=5))
    assert assert_error(reply, INVALID_PARAMS, "invalid_params", 5)["data"]["field"] == "params"
    for params in ("x", 3):
        reply = send(client, req("session.get", params, rid=5))
        assert_error(reply, INVALID_REQUEST, "invalid_request", 5)


PROJECT_IDS: list[Any] = [
    ("a", True),
    ("A.b_c-9", True),
    ("9" + "x" * 127, True),
    ("", False),
    ("-a", False),
    (".a", False),
    ("_a", False),
    ("a/b", False),
    ("a b", False),
    ("abc\n", False),
    ("é", False),
    ("9" + "x" * 128, False),
]


def test_project_id_pattern(client: Client) -> None:
    def check(project_id: str, ok: bool) -> None:
        reply = send(client, req("session.get", {"projectId": project_id}, rid=8))
        if ok:
            assert assert_result(reply, 8) == {"session": None}
        else:
            error = assert_error(reply, INVALID_PARAMS, "invalid_params", rid=8)
            assert error["data"]["field"] == "projectId"

    each([pytest.param(p, ok, id=repr(p[:12])) for p, ok in PROJECT_IDS], check)


def test_string_size_bounds(client: Client) -> None:
    # A prompt of exactly 256 KiB passes validation (no session: no_session);
    # one more byte is invalid. Bytes are UTF-8 bytes, not characters.
    def prompt(text: str) -> Any:
        return send(client, req("agent.prompt", {"projectId": "p", "prompt": text}, rid=1))

    assert_error(prompt("x" * PROMPT_MAX), -32001, "no_session", rid=1)
    err = assert_error(prompt("x" * (PROMPT_MAX + 1)), INVALID_PARAMS, "invalid_params", rid=1)
    assert err["data"]["field"] == "prompt"
    assert_error(prompt("é" * (PROMPT_MAX // 2)), -32001, "no_session", rid=1)
    err = assert_error(prompt("é" * (PROMPT_MAX // 2) + "x"), INVALID_PARAMS, "invalid_params", 1)
    assert err["data"]["field"] == "prompt"

    # other strings: 4 KiB
    def load(session_id: str) -> Any:
        return send(client, req("session.messages.load", {"sessionId": session_id}, rid=2))

    assert_error(load("s" * STRING_MAX), -32005, "not_found", rid=2)
    err = assert_error(load("s" * (STRING_MAX + 1)), INVALID_PARAMS, "invalid_params", rid=2)
    assert err["data"]["field"] == "sessionId"
    err = assert_error(
        send(client, req("agent.start", {**BASE_START, "model": "m" * (STRING_MAX + 1)}, rid=3)),
        INVALID_PARAMS,
        "invalid_params",
        rid=3,
    )
    assert err["data"]["field"] == "model"
    err = assert_error(
        send(
            client,
            req(
                "settings.set",
                {"key": "system_prompt_template", "value": "é" * (STRING_MAX // 2 + 1)},
                rid=4,
            ),
        ),
        INVALID_PARAMS,
        "invalid_params",
        rid=4,
    )
    assert err["data"]["field"] == "value"
    assert client.call("session.list")["sessions"] == []


def test_integers_beyond_64_bits_are_invalid_params(client: Client) -> None:
    started = start_mock(client, "big")
    sid = started["sessionId"]
    poll(lambda: client.call("session.get", {"projectId": "big"})["session"]["status"] == "done")
    # the largest storable values are fine ...
    assert client.call("session.list", {"before": INT64_MAX})["sessions"][0]["sessionId"] == sid
    page = client.call("session.messages.load", {"sessionId": sid, "afterSeq": INT64_MAX})
    assert page["messages"] == [] and page["hasMore"] is False
    # ... one more is a bad param, not an internal error
    for method, params, field in [
        ("session.list", {"before": INT64_MAX + 1}, "before"),
        ("session.list", {"before": 2**64 - 1}, "before"),
        ("session.messages.load", {"sessionId": sid, "afterSeq": INT64_MAX + 1}, "afterSeq"),
    ]:
        with pytest.raises(InvalidParams) as info:
            client.call(method, params)
        assert info.value.code == INVALID_PARAMS
        assert info.value.field == field


# --------------------------------------------------------------------------- no state change


def assert_nothing_stored(client: Client) -> None:
    assert client.call("session.get", {"projectId": "p"}) == {"session": None}
    assert client.call("session.load", {"projectId": "p"}) == {"session": None}
    assert client.call("session.list") == {"sessions": []}
    info = client.call("daemon.info")
    assert info["sessions"] == {"live": 0, "stored": 0}
    assert client.call("notifications.list") == {"notifications": []}
    assert client.call("health.get")["projects"] == []


MALFORMED_STARTS: list[Any] = [
    pytest.param({**BASE_START, "providerConfig": {"turns": 0, "delayMs": 0}}, id="turns"),
    pytest.param({**BASE_START, "bogus": True}, id="extra-param"),
    pytest.param({**BASE_START, "prompt": ""}, id="prompt-empty"),
    pytest.param({**BASE_START, "cwd": "/no/such/dir/here"}, id="cwd"),
    pytest.param({**BASE_START, "extraEnv": {"A=B": "x"}}, id="env-name"),
    pytest.param({**BASE_START, "model": "m\x00x"}, id="nul-model"),
    pytest.param({**BASE_START, "extraEnv": {"A": "b\x00c"}}, id="nul-env-value"),
    pytest.param({**BASE_START, "additionalDirectories": ["/tmp\x00x"]}, id="nul-dir"),
    pytest.param({**BASE_START, "systemPrompt": "be\x00brief"}, id="nul-system-prompt"),
    pytest.param({**BASE_START, "worktreeName": "w\x00"}, id="nul-worktree"),
    pytest.param({**BASE_START, "claudeConfigDir": "/tmp\x00"}, id="nul-config-dir"),
]


def test_malformed_start_changes_nothing(client: Client) -> None:
    def check(params: dict[str, Any]) -> None:
        reply = send(client, req("agent.start", params, rid="s"))
        assert assert_error(reply, INVALID_PARAMS, "invalid_params", rid="s")["data"]["field"]
        # as a notification too: refused silently
        client.notify("agent.start", params)

    each(MALFORMED_STARTS, check)
    assert client.ping()["pong"] is True
    time.sleep(0.3)
    assert_nothing_stored(client)


def test_malformed_start_does_not_replace_a_finished_session(client: Client) -> None:
    first = start_mock(client, "p")
    poll(lambda: client.call("health.get", {"projectId": "p"})["projects"][0]["status"] == "done")
    with pytest.raises(InvalidParams) as info:
        start_mock(client, "p", turns=0)
    assert info.value.field == "providerConfig.turns"
    current = client.call("session.get", {"projectId": "p"})["session"]
    assert current["sessionId"] == first["sessionId"] and current["status"] == "done"
    assert [s["sessionId"] for s in client.call("session.list")["sessions"]] == [first["sessionId"]]


def test_invalid_setting_changes_nothing(client: Client, short_tmp: Path) -> None:
    before = settings_of(client)
    bad = [
        ("permission_mode", "yolo"),
        ("default_cwd", "relative"),
        ("default_cwd", str(short_tmp / "missing")),
        ("default_cwd", str(short_tmp) + "\x00"),
        ("provider_settings", "[]"),
        ("provider_settings", '{"gpt":{}}'),
        ("session_retention_count", "0"),
        ("max_live_sessions", "lots"),
        ("system_prompt_template", "a\x00b"),
    ]
    for key, value in bad:
        reply = send(client, req("settings.set", {"key": key, "value": value}, rid=key))
        assert (
            assert_error(reply, INVALID_PARAMS, "invalid_params", rid=key)["data"]["field"]
            == "value"
        )
    reply = send(client, req("settings.set", {"key": "bogus", "value": "1"}, rid=0))
    assert assert_error(reply, INVALID_PARAMS, "invalid_params", rid=0)["data"]["field"] == "key"
    assert settings_of(client) == before


# --------------------------------------------------------------------------- frame layouts


PING = dumps(req("daemon.ping", rid="f"))
SET_NOTE = dumps(note("settings.set", {"key": "cleanup_grace_ms", "value": "7"}))


def test_req_socket_one_frame(daemon: DaemonProcess) -> None:
    sock = raw_socket(daemon, zmq.REQ)
    try:
        sock.send(PING)
        frames = sock.recv_multipart()
        assert len(frames) == 1
        assert assert_result(loads(frames[0]), "f")["pong"] is True
        # a REQ socket can go on: send, receive, send, ...
        sock.send(b"[]")
        assert_error(loads(sock.recv()), INVALID_REQUEST, "invalid_request", rid=None)
    finally:
        sock.close()


def test_dealer_with_empty_delimiter(daemon: DaemonProcess) -> None:
    sock = raw_socket(daemon, zmq.DEALER)
    try:
        sock.send_multipart([b"", PING])
        frames = sock.recv_multipart()
        assert len(frames) == 2 and frames[0] == b""
        assert assert_result(loads(frames[1]), "f")["pong"] is True
        # errors come back in the same layout
        sock.send_multipart([b"", b"nope"])
        frames = sock.recv_multipart()
        assert len(frames) == 2 and frames[0] == b""
        assert_error(loads(frames[1]), PARSE_ERROR, "parse_error", rid=None)
    finally:
        sock.close()


def test_dealer_without_delimiter(daemon: DaemonProcess) -> None:
    sock = raw_socket(daemon, zmq.DEALER)
    try:
        sock.send(PING)
        frames = sock.recv_multipart()
        assert len(frames) == 1
        assert assert_result(loads(frames[0]), "f")["pong"] is True
        # a batch, and an error, are answered in the same layout
        sock.send(dumps([req("daemon.ping", rid=1), req("daemon.ping", rid=2)]))
        frames = sock.recv_multipart()
        assert len(frames) == 1
        assert sorted(r["id"] for r in loads(frames[0])) == [1, 2]
        sock.send(b"{")
        frames = sock.recv_multipart()
        assert len(frames) == 1
        assert_error(loads(frames[0]), PARSE_ERROR, "parse_error", rid=None)
        # an answer that takes an actor round trip keeps the layout too
        sock.send(dumps(req("session.list", rid=3)))
        frames = sock.recv_multipart()
        assert len(frames) == 1
        assert assert_result(loads(frames[0]), 3) == {"sessions": []}
    finally:
        sock.close()


ODD_LAYOUTS: list[Any] = [
    pytest.param([b"", PING, PING], True, id="delimiter-and-two-frames"),
    pytest.param([PING, PING, PING], False, id="three-frames"),
    pytest.param([b"x", PING], False, id="non-empty-first-of-two"),
    pytest.param([b"", b"", PING], True, id="two-delimiters"),
    pytest.param([b"", SET_NOTE, SET_NOTE], True, id="notification-frames"),
]


def test_other_frame_layouts_are_invalid_requests(daemon: DaemonProcess, client: Client) -> None:
    sock = raw_socket(daemon, zmq.DEALER)

    def check(frames: list[bytes], delimited: bool) -> None:
        sock.send_multipart(frames)
        got = sock.recv_multipart()
        if delimited:
            assert len(got) == 2 and got[0] == b"", got
        else:
            assert len(got) == 1, got
        assert_error(loads(got[-1]), INVALID_REQUEST, "invalid_request", rid=None)

    try:
        each(ODD_LAYOUTS, check)
    finally:
        sock.close()
    # nothing was executed
    assert settings_of(client)["cleanup_grace_ms"] == "60000"
