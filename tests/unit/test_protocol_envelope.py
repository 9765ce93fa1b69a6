"""Tests of JSON-RPC envelope decoding/encoding (protocol.envelope) and event frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.envelope import (
    MAX_BATCH,
    MAX_REQUEST_BYTES,
    Call,
    Decoded,
    Rejected,
    decode,
    dumps,
    error_response,
    loads,
    result_response,
)
from corral.protocol.errors import InvalidParams, InvalidRequest, ParseError, RpcError, TooLarge
from corral.protocol.events import (
    DAEMON_EVENTS,
    EVENT_FRAME,
    EVENTS,
    HEARTBEAT_TOPIC,
    PROJECT_EVENTS,
    daemon_topic,
    event_frame,
    event_topic,
    project_topic,
)
from corral.protocol.schema import validate


def one(payload: bytes) -> Call | Rejected:
    d = decode(payload)
    assert not d.batch
    assert len(d.entries) == 1
    return d.entries[0]


def rejected(payload: bytes, cls: type[RpcError] = InvalidRequest) -> Rejected:
    entry = one(payload)
    assert isinstance(entry, Rejected), entry
    assert type(entry.error) is cls
    return entry


def test_valid_request() -> None:
    entry = one(b'{"jsonrpc":"2.0","id":1,"method":"daemon.ping","params":{"a":1}}')
    assert entry == Call(1, "daemon.ping", {"a": 1}, False)
    entry = one(b'{"jsonrpc":"2.0","id":"x","method":"daemon.ping"}')
    assert entry == Call("x", "daemon.ping", None, False)


def test_id_types() -> None:
    for raw, expected in [(b'"abc"', "abc"), (b"7", 7), (b"-1.5", -1.5), (b"null", None)]:
        entry = one(b'{"jsonrpc":"2.0","method":"m","id":' + raw + b"}")
        assert isinstance(entry, Call)
        assert entry.id == expected
        assert entry.notification is False
    for raw in (b"true", b"false", b"[1]", b'{"a":1}'):
        entry = rejected(b'{"jsonrpc":"2.0","method":"m","id":' + raw + b"}")
        assert entry.id is None
        assert "id" in entry.error.message


def test_notification() -> None:
    entry = one(b'{"jsonrpc":"2.0","method":"daemon.ping"}')
    assert isinstance(entry, Call)
    assert entry.notification is True
    assert entry.id is None


def test_params_are_raw() -> None:
    entry = one(b'{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2]}')
    assert isinstance(entry, Call)
    assert entry.params == [1, 2]
    entry = one(b'{"jsonrpc":"2.0","id":1,"method":"m","params":null}')
    assert isinstance(entry, Call)
    assert entry.params is None


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"not json",
        b"\xff\xfe",
        b'{"a": "\xff"}',
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        b"NaN",
    ],
)
def test_parse_error(payload: bytes) -> None:
    entry = rejected(payload, ParseError)
    assert entry.id is None
    assert entry.error.code == -32700
    assert entry.error.data["reason"] == "parse_error"


@pytest.mark.parametrize(
    ("payload", "expected_id"),
    [
        (b"1", None),
        (b'"x"', None),
        (b"null", None),
        (b'{"id":1,"method":"m"}', 1),
        (b'{"jsonrpc":"1.0","id":1,"method":"m"}', 1),
        (b'{"jsonrpc":2.0,"id":"a","method":"m"}', "a"),
        (b'{"jsonrpc":"2.0","id":1}', 1),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', 1),
        (b'{"jsonrpc":"2.0","id":1,"method":null}', 1),
        (b'{"jsonrpc":"2.0","id":1,"method":"m","param":{}}', 1),
        (b'{"jsonrpc":"2.0","method":"m","extra":1}', None),
        (b'{"jsonrpc":"2.0","id":true,"method":"m"}', None),
    ],
)
def test_invalid_request(payload: bytes, expected_id: object) -> None:
    entry = rejected(payload)
    assert entry.id == expected_id
    assert entry.error.code == -32600
    assert entry.error.data["reason"] == "invalid_request"
    assert entry.error.message != InvalidRequest.default_message


def test_batch() -> None:
    payload = dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "a"},
            {"jsonrpc": "2.0", "method": "b"},
            5,
            {"jsonrpc": "2.0", "id": 2},
        ]
    )
    d = decode(payload)
    assert d.batch
    a, b, c, e = d.entries
    assert a == Call(1, "a", None, False)
    assert isinstance(b, Call)
    assert b.notification
    assert isinstance(c, Rejected)
    assert c.id is None
    assert isinstance(e, Rejected)
    assert e.id == 2


def test_batch_limits() -> None:
    entry = rejected(b"[]")
    assert "empty" in entry.error.message
    req = {"jsonrpc": "2.0", "id": 1, "method": "m"}
    d = decode(dumps([req] * MAX_BATCH))
    assert d.batch
    assert len(d.entries) == MAX_BATCH
    entry = rejected(dumps([req] * (MAX_BATCH + 1)))
    assert entry.id is None


def test_too_large() -> None:
    pad = b" " * (MAX_REQUEST_BYTES - 40)
    ok = b'{"jsonrpc":"2.0","id":1,"method":"m"}' + pad
    assert len(ok) <= MAX_REQUEST_BYTES
    assert isinstance(one(ok), Call)
    big = b'{"jsonrpc":"2.0","id":1,"method":"m"}' + b" " * MAX_REQUEST_BYTES
    entry = rejected(big, TooLarge)
    assert entry.id is None
    assert entry.error.code == -32600
    assert entry.error.data["reason"] == "too_large"
    assert isinstance(entry.error, InvalidRequest)
    # too large even if not JSON: no parsing happens
    rejected(b"\xff" * (MAX_REQUEST_BYTES + 1), TooLarge)


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    d = decode(b"[" * 100_000 + b"]" * 100_000)
    assert isinstance(d, Decoded)
    assert isinstance(d.entries[0], Rejected)


def test_responses_and_json() -> None:
    assert result_response(1, {"pong": True}) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"pong": True},
    }
    err = InvalidParams("limit: too big", field="limit")
    resp = error_response("a", err)
    assert resp == {
        "jsonrpc": "2.0",
        "id": "a",
        "error": {
            "code": -32602,
            "message": "limit: too big",
            "data": {"reason": "invalid_params", "field": "limit"},
        },
    }
    assert loads(dumps(resp)) == resp
    assert dumps({"a": "é"}) == '{"a":"é"}'.encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_decode_never_raises_on_bytes(payload: bytes) -> None:
    d = decode(payload)
    assert d.entries
    for entry in d.entries:
        assert isinstance(entry, Call | Rejected)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["jsonrpc", "id", "method", "params", "x"]), children, max_size=5
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_decode_never_raises_on_json(value: object) -> None:
    d = decode(orjson.dumps(value))
    assert d.entries
    for entry in d.entries:
        if isinstance(entry, Call):
            assert isinstance(entry.method, str)
        else:
            assert isinstance(entry.error, RpcError)


# ----------------------------------------------------------------------------- events


def test_topics() -> None:
    assert project_topic("foo", "agent.message") == "project/foo/agent.message"
    assert daemon_topic("daemon.heartbeat") == "daemon/daemon.heartbeat" == HEARTBEAT_TOPIC
    assert event_topic("agent.status", "p") == "project/p/agent.status"
    assert event_topic("daemon.started") == "daemon/daemon.started"
    assert {"daemon.started", "daemon.stopping", "settings.changed", "daemon.heartbeat"} == set(
        DAEMON_EVENTS
    )
    assert {
        "agent.message",
        "agent.status",
        "agent.cost",
        "agent.delta",
        "notification",
        "health",
        "conflict",
    } == PROJECT_EVENTS


def test_event_frames_and_data_examples() -> None:
    msg = {"id": "m", "seqId": 3, "role": "assistant", "content": "hi", "timestamp": 5}
    examples: dict[str, dict[str, Any]] = {
        "agent.message": {"sessionId": "s", "messages": [msg]},
        "agent.status": {"sessionId": "s", "status": "error", "error": "boom"},
        "agent.cost": {"sessionId": "s", "costUsd": 0.5, "inputTokens": 1, "outputTokens": 2},
        "agent.delta": {
            "sessionId": "s",
            "role": "assistant",
            "text": "Hel",
            "offset": 0,
            "afterSeq": 2,
        },
        "notification": {
            "id": "n",
            "variant": "warning",
            "kind": "agent_stalled",
            "message": "stalled",
            "ts": 1,
        },
        "health": {
            "projectId": "p",
            "sessionId": "s",
            "status": "running",
            "stalled": True,
            "costUsd": 1.5,
            "inputTokens": 1,
            "outputTokens": 1,
            "lastActivity": 1,
            "messageCount": 3,
        },
        "conflict": {"path": "/a", "sessionIds": ["s", "t"]},
        "daemon.started": {"version": "0.1.0", "pid": 3},
        "daemon.stopping": {},
        "settings.changed": {"key": "permission_mode", "settings": {"permission_mode": "plan"}},
        "daemon.heartbeat": {"live": 1, "lastSeqIds": {"s": 3}},
    }
    assert set(examples) == set(EVENTS)
    for name, data in examples.items():
        validate(EVENTS[name], data)
        frame = event_frame(name, "boot-1", 7, 1000, data, None if name in DAEMON_EVENTS else "p")
        validate(EVENT_FRAME, frame)
        assert ("projectId" in frame) == (name not in DAEMON_EVENTS)
    with pytest.raises(InvalidParams) as info:
        validate(EVENTS["agent.message"], {"sessionId": "s", "messages": [{**msg, "role": "bot"}]})
    assert info.value.field == "messages.0.role"
    with pytest.raises(InvalidParams):
        validate(EVENTS["agent.message"], {"sessionId": "s", "messages": []})
