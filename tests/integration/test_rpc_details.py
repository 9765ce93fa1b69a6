"""JSON-RPC details through a real daemon, seen as raw bytes: ids of any size come
back exactly as sent, params that are neither an object nor an array are an
Invalid Request, and ``settings.set`` answers the value as the client gave it."""

from __future__ import annotations

from typing import Any

import orjson
import zmq

from corral.protocol.client import Client, Subscriber
from corral.supervisor.background import DaemonProcess


def exchange(daemon: DaemonProcess, payload: bytes) -> bytes:
    """Send one request frame on a DEALER (``["", request]``); the raw reply frame."""
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(daemon.rpc_url)
        sock.send_multipart([b"", payload])
        assert sock.poll(5000), "no reply within 5 s"
        empty, reply = sock.recv_multipart()
        assert empty == b""
        return bytes(reply)
    finally:
        sock.close()


def test_big_integer_ids_come_back_exactly(daemon: DaemonProcess) -> None:
    for rid in (b"1180591620717411303424", b"-1180591620717411303424", b"18446744073709551616"):
        reply = exchange(daemon, b'{"jsonrpc":"2.0","id":' + rid + b',"method":"daemon.ping"}')
        assert reply.startswith(b'{"jsonrpc":"2.0","id":' + rid + b',"result":'), reply
        # an error answer keeps the id too
        reply = exchange(daemon, b'{"jsonrpc":"2.0","id":' + rid + b',"method":"no.such"}')
        assert reply.startswith(b'{"jsonrpc":"2.0","id":' + rid + b',"error":'), reply
    batch = exchange(
        daemon,
        b'[{"jsonrpc":"2.0","id":1180591620717411303424,"method":"daemon.ping"},'
        b'{"jsonrpc":"2.0","id":1.10,"method":"daemon.ping"}]',
    )
    assert b'"id":1180591620717411303424,' in batch and b'"id":1.10,' in batch


def test_scalar_params_are_an_invalid_request(daemon: DaemonProcess, client: Client) -> None:
    for params in (b'"x"', b"3", b"true"):
        reply = orjson.loads(
            exchange(
                daemon,
                b'{"jsonrpc":"2.0","id":9,"method":"settings.set","params":' + params + b"}",
            )
        )
        assert reply["id"] == 9
        assert reply["error"]["code"] == -32600
        assert reply["error"]["data"]["reason"] == "invalid_request"
    # an array stays invalid_params (params are by name)
    reply = orjson.loads(
        exchange(daemon, b'{"jsonrpc":"2.0","id":9,"method":"session.get","params":["p"]}')
    )
    assert reply["error"]["code"] == -32602
    assert reply["error"]["data"] == {"reason": "invalid_params", "field": "params"}
    assert client.call("daemon.ping")["pong"] is True


def test_settings_set_answers_the_value_as_given(client: Client, subscriber: Subscriber) -> None:
    given = {
        "provider_settings": '{ "mock": { "enabled": true } }',
        "cleanup_grace_ms": " 1500 ",
        "session_retention_count": "07",
    }
    for key, value in given.items():
        settings = client.call("settings.set", {"key": key, "value": value})["settings"]
        assert settings[key] == value
        _topic, frame = subscriber.wait_for(
            lambda _t, f, key=key: f["event"] == "settings.changed" and f["data"]["key"] == key,
            5,
        )
        assert frame["data"]["value"] == value
        assert frame["data"]["settings"][key] == value
        assert client.call("settings.getAll")["settings"][key] == value
    # and the values work as the numbers and objects they are
    start = client.call(
        "agent.start",
        {"projectId": "s", "provider": "mock", "prompt": "hi", "providerConfig": {"delayMs": 0}},
    )
    assert start["status"] == "running"


def test_session_get_is_never_behind_an_event(client: Client, subscriber: Subscriber) -> None:
    """Each committed step reaches what ``session.get`` answers before its events go
    out: on the first turn and on a follow-up (after cost and status were reported)."""
    config = {"flood": 300, "delayMs": 20, "toolCalls": 1}
    start = client.call(
        "agent.start",
        {"projectId": "g", "provider": "mock", "prompt": "go", "providerConfig": config},
    )
    sid = start["sessionId"]
    for turn in range(2):
        if turn:
            reply = client.call("agent.prompt", {"projectId": "g", "prompt": "again"})
            session = client.call("session.get", {"projectId": "g"})["session"]
            # running, unless the short turn already ended on a loaded machine
            assert session["status"] in ("running", "done"), session["status"]
            assert session["lastSeqId"] >= reply["seqId"]
        checked = 0
        while True:
            _topic, frame = subscriber.wait_for(
                lambda t, _f: t in ("project/g/agent.message", "project/g/agent.status"), 20
            )
            session = client.call("session.get", {"projectId": "g"})["session"]
            assert session is not None and session["sessionId"] == sid
            if frame["event"] == "agent.message":
                newest = max(m["seqId"] for m in frame["data"]["messages"])
                assert session["lastSeqId"] >= newest, (turn, session["lastSeqId"], newest)
                checked += 1
            elif frame["data"]["status"] == "done":
                assert session["status"] == "done"
                break
        # the flood is the first turn's; a follow-up is a default turn (init to result)
        assert checked >= (10 if turn == 0 else 3), f"turn {turn}: {checked} agent.message events"
    stored = client.call("session.messages.load", {"sessionId": sid, "afterSeq": 0, "limit": 5000})
    assert session["lastSeqId"] == stored["lastSeqId"] == stored["messages"][-1]["seqId"]
