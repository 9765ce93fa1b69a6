"""Tests of JSON-RPC envelope decoding/encoding (protocol.envelope) and event frames."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.envelope import (
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


# The contract's numbers (PROTOCOL.md), not the module's constants: a changed
# constant must fail here.
MAX_BATCH = 64
MAX_REQUEST_BYTES = 1024 * 1024  # 1 MiB


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
    request = b'{"jsonrpc":"2.0","id":1,"method":"m"}'
    ok = request + b" " * (MAX_REQUEST_BYTES - len(request))
    assert len(ok) == 1_048_576
    assert isinstance(one(ok), Call)
    big = ok + b" "
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


# ------------------------------------------------------------- params shape, exact ids


@pytest.mark.parametrize("params", [b'"x"', b"3", b"-1.5", b"true", b"false"])
def test_params_neither_object_nor_array_is_an_invalid_request(params: bytes) -> None:
    entry = rejected(b'{"jsonrpc":"2.0","id":4,"method":"session.get","params":' + params + b"}")
    assert entry.id == 4
    assert entry.error.code == -32600
    assert entry.error.data["reason"] == "invalid_request"
    assert "params" in entry.error.message
    # a notification with such params is answered too (it cannot be executed)
    note = rejected(b'{"jsonrpc":"2.0","method":"session.get","params":' + params + b"}")
    assert note.id is None


def test_params_array_and_object_reach_validation() -> None:
    for params, expected in [(b"[1,2]", [1, 2]), (b"[]", []), (b"{}", {}), (b"null", None)]:
        entry = one(b'{"jsonrpc":"2.0","id":1,"method":"m","params":' + params + b"}")
        assert isinstance(entry, Call)
        assert entry.params == expected


def test_params_shape_in_a_batch_is_per_entry() -> None:
    d = decode(
        b'[{"jsonrpc":"2.0","id":1,"method":"m","params":"x"},'
        b'{"jsonrpc":"2.0","id":2,"method":"m","params":[1]}]'
    )
    bad, good = d.entries
    assert isinstance(bad, Rejected) and bad.id == 1 and bad.error.code == -32600
    assert isinstance(good, Call) and good.params == [1]


def answered_id(payload: bytes) -> bytes:
    """The id of the answer to ``payload`` as the router writes it (its raw JSON text)."""
    d = decode(payload)
    entry = d.entries[0]
    assert isinstance(entry, Call), entry
    out = dumps(result_response(entry.id, {"pong": True}))
    prefix, rest = out.split(b'"id":', 1)
    assert prefix == b'{"jsonrpc":"2.0",'
    return rest.split(b',"result"', 1)[0]


@pytest.mark.parametrize(
    "rid",
    [
        b"1180591620717411303424",  # 2**70: orjson alone reads it as a float
        b"-1180591620717411303424",
        b"9007199254740993",  # 2**53 + 1: not a double
        b"18446744073709551615",  # 2**64 - 1
        b"18446744073709551616",  # 2**64
        b"-9223372036854775809",  # -2**63 - 1
        b"1" + b"0" * 300,
        b"1.10",
        b"1e5",
        b"-1.5",
        b"7",
        b"0.1",
    ],
)
def test_numeric_ids_come_back_exactly_as_sent(rid: bytes) -> None:
    assert answered_id(b'{"jsonrpc":"2.0","id":' + rid + b',"method":"m"}') == rid
    # an error answer (a malformed request) keeps it too
    entry = one(b'{"jsonrpc":"1.0","id":' + rid + b',"method":"m"}')
    assert isinstance(entry, Rejected)
    assert dumps(error_response(entry.id, entry.error)).startswith(
        b'{"jsonrpc":"2.0","id":' + rid + b","
    )


def test_exact_ids_in_a_batch() -> None:
    big = b"1180591620717411303424"
    d = decode(
        b'[{"jsonrpc":"2.0","id":' + big + b',"method":"a"},'
        b'{"jsonrpc":"2.0","id":"s","method":"b"},'
        b'{"jsonrpc":"2.0","id":2.50,"method":"c"}]'
    )
    ids = [dumps(result_response(e.id, None)).split(b'"id":')[1].split(b",")[0] for e in d.entries]
    assert ids == [big, b'"s"', b"2.50"]


def test_a_number_beyond_a_double_is_a_parse_error() -> None:
    # 1.8e308 is about the largest double; 2e308 cannot be read at all
    entry = rejected(b'{"jsonrpc":"2.0","id":2' + b"0" * 308 + b',"method":"m"}', ParseError)
    assert entry.id is None
    assert answered_id(b'{"jsonrpc":"2.0","id":1' + b"0" * 308 + b',"method":"m"}') == (
        b"1" + b"0" * 308
    )


def test_exact_ids_leave_plain_ids_alone() -> None:
    # ids a double writes back verbatim stay Python values
    assert one(b'{"jsonrpc":"2.0","id":-1.5,"method":"m"}') == Call(-1.5, "m", None, False)
    assert one(b'{"jsonrpc":"2.0","id":2,"method":"m"}') == Call(2, "m", None, False)


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
        "approval.requested",
        "approval.resolved",
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
            "live": True,
            "activity": "stalled",
            "activeTool": "Bash",
            "toolSince": 1,
            "lastActivity": 1,
            "idleMs": 5,
            "toolCalls": {"started": 2, "finished": 1},
            "costUsd": 1.5,
            "inputTokens": 1,
            "outputTokens": 1,
            "cacheReadTokens": 0,
            "cacheCreationTokens": 0,
            "burnRateUsdPerHour": 0.5,
            "tokensPerMinute": 10.0,
            "contextTokens": 1,
            "contextLimit": 200000,
            "contextPressure": 0.0,
            "openConflicts": 0,
            "attention": {"score": 100, "reason": "stalled: tool Bash has run for 5s"},
            "stalled": True,
            "messageCount": 3,
        },
        "conflict": {
            "projectId": "p",
            "path": "/a",
            "sessionIds": ["s", "t"],
            "projectIds": ["p", "q"],
            "lastWriteTs": 1,
            "acknowledged": False,
        },
        "approval.requested": {
            "approvalId": "a",
            "sessionId": "s",
            "projectId": "p",
            "provider": "mock",
            "toolName": "Bash",
            "input": {"command": "echo hi > out.txt"},
            "summary": "echo hi > out.txt",
            "createdAt": 1,
        },
        "approval.resolved": {
            "approvalId": "a",
            "sessionId": "s",
            "decision": "allow",
            "by": "client",
        },
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
