"""Tests of the synchronous client and subscriber (protocol.client) against in-test servers."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import zmq

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import InvalidParams, NoSession, RpcError
from corral.protocol.events import HEARTBEAT_TOPIC, event_frame, project_topic

Handler = Callable[[list[bytes]], list[list[bytes]]]
"""Gets the frames after the identity; returns reply messages (without identity)."""


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    # ipc paths are limited to ~100 bytes: fall back to a short temp dir
    if len(str(tmp_path)) < 60:
        yield tmp_path
        return
    d = Path(tempfile.mkdtemp(prefix="cp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class RouterServer:
    """A ROUTER on a thread; ``handler`` decides the replies; records what it got."""

    def __init__(self, url: str, handler: Handler) -> None:
        self.url = url
        self.handler = handler
        self.received: list[list[bytes]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.url)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(20):
                    continue
                identity, *rest = sock.recv_multipart()
                self.received.append(rest)
                for reply in self.handler(rest):
                    sock.send_multipart([identity, *reply])
        finally:
            sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def body(frames: list[bytes]) -> Any:
    return orjson.loads(frames[-1])


def answer(frames: list[bytes], response: Any) -> list[bytes]:
    """Reply with the request's framing (empty delimiter or not)."""
    prefix = [b""] if len(frames) == 2 else []
    return [*prefix, orjson.dumps(response)]


def jsonrpc_handler(frames: list[bytes]) -> list[list[bytes]]:
    try:
        req = body(frames)
    except orjson.JSONDecodeError:
        err = {"code": -32700, "message": "parse", "data": {"reason": "parse_error"}}
        return [answer(frames, {"jsonrpc": "2.0", "id": None, "error": err})]
    if isinstance(req, list):
        return [
            answer(
                frames,
                [{"jsonrpc": "2.0", "id": r.get("id"), "result": r} for r in req if "id" in r],
            )
        ]
    if "id" not in req:
        return []
    rid, method = req["id"], req["method"]
    if method == "echo":
        return [answer(frames, {"jsonrpc": "2.0", "id": rid, "result": req.get("params")})]
    if method == "fail":
        err = {"code": -32001, "message": "nope", "data": {"reason": "no_session", "x": 1}}
        return [answer(frames, {"jsonrpc": "2.0", "id": rid, "error": err})]
    if method == "bad":
        err = {
            "code": -32602,
            "message": "limit: too big",
            "data": {"reason": "invalid_params", "field": "limit"},
        }
        return [answer(frames, {"jsonrpc": "2.0", "id": rid, "error": err})]
    if method == "stale-first":
        stale = {"jsonrpc": "2.0", "id": 987654, "result": {"stale": True}}
        return [
            answer(frames, stale),
            answer(frames, "not an object"),
            [b"", b"garbage"],
            answer(frames, {"jsonrpc": "2.0", "id": rid, "result": {"fresh": True}}),
        ]
    if method == "slow":
        time.sleep(0.4)
        return [answer(frames, {"jsonrpc": "2.0", "id": rid, "result": {"late": True}})]
    if method == "silent":
        return []
    if method == "custom-error":
        err = {"code": -32099, "message": "weird", "data": {"reason": "weird_reason"}}
        return [answer(frames, {"jsonrpc": "2.0", "id": rid, "error": err})]
    return [answer(frames, {"jsonrpc": "2.0", "id": rid, "result": {"method": method}})]


@pytest.fixture
def server(sock_dir: Path) -> Iterator[RouterServer]:
    srv = RouterServer(f"ipc://{sock_dir}/rpc.sock", jsonrpc_handler)
    yield srv
    srv.close()


@pytest.fixture
def client(server: RouterServer) -> Iterator[Client]:
    with Client(server.url, timeout=2.0) as c:
        yield c


def test_call_framing_and_result(client: Client, server: RouterServer) -> None:
    assert client.call("echo", {"a": 1}) == {"a": 1}
    frames = server.received[-1]
    assert len(frames) == 2
    assert frames[0] == b""
    req = orjson.loads(frames[1])
    assert req["jsonrpc"] == "2.0"
    assert req["method"] == "echo"
    assert req["params"] == {"a": 1}
    assert isinstance(req["id"], int)
    client.call("echo")
    assert "params" not in orjson.loads(server.received[-1][1])


def test_ids_are_unique(client: Client, server: RouterServer) -> None:
    for _ in range(3):
        client.call("echo", {})
    ids = [orjson.loads(f[1])["id"] for f in server.received]
    assert len(set(ids)) == 3


def test_typed_errors(client: Client) -> None:
    with pytest.raises(NoSession) as info:
        client.call("fail")
    assert info.value.data == {"reason": "no_session", "x": 1}
    assert info.value.message == "nope"
    with pytest.raises(InvalidParams) as info2:
        client.call("bad")
    assert info2.value.field == "limit"
    with pytest.raises(RpcError) as info3:
        client.call("custom-error")
    assert info3.value.code == -32099
    assert info3.value.data["reason"] == "weird_reason"


def test_stale_replies_are_discarded(client: Client) -> None:
    assert client.call("stale-first") == {"fresh": True}


def test_timeout_then_late_reply_is_not_taken(client: Client) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        client.call("slow", timeout=0.1)
    # the call's own timeout, not the client's 2 s (with room for a loaded machine)
    assert time.monotonic() - t0 < 1.5
    # the late {"late": true} answer goes to the old socket and is dropped
    assert client.call("echo", {"n": 2}) == {"n": 2}
    with pytest.raises(TimeoutError):
        client.call("silent", timeout=0.05)
    assert client.call("echo", {"n": 3}) == {"n": 3}


def test_timeout_without_server(sock_dir: Path) -> None:
    with Client(f"ipc://{sock_dir}/nobody.sock", timeout=0.1) as c:
        with pytest.raises(TimeoutError):
            c.ping()
        with pytest.raises(TimeoutError):
            c.call("x", timeout=0.05)


def test_notify_sends_no_id(client: Client, server: RouterServer) -> None:
    client.notify("echo", {"a": 1})
    client.call("echo", {})  # the server handles messages in order
    req = orjson.loads(server.received[-2][1])
    assert "id" not in req
    assert req["method"] == "echo"


def test_call_batch(client: Client, server: RouterServer) -> None:
    out = client.call_batch([("a", {"x": 1}), ("b", None), {"jsonrpc": "2.0", "method": "n"}])
    assert len(out) == 2
    sent = orjson.loads(server.received[-1][1])
    assert isinstance(sent, list)
    assert len(sent) == 3
    assert {r["result"]["method"] for r in out} == {"a", "b"}
    assert client.call_batch([{"jsonrpc": "2.0", "method": "n"}], timeout=0.05) == []


def test_raw_access(client: Client, server: RouterServer) -> None:
    reply = client.request_raw(b"{garbage")
    assert isinstance(reply, dict)
    assert reply["error"]["data"]["reason"] == "parse_error"
    # a bare request frame (no empty delimiter) is answered bare
    frames = client.send_raw([orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "echo"})])
    assert frames is not None
    assert len(frames) == 1
    assert orjson.loads(frames[0])["id"] == 1
    # no answer: None, and the client still works afterwards
    assert client.send_raw([b"", orjson.dumps({"jsonrpc": "2.0", "method": "x"})], 0.05) is None
    assert client.request_raw(orjson.dumps({"jsonrpc": "2.0", "method": "x"}), 0.05) is None
    assert client.call("echo", {"ok": 1}) == {"ok": 1}


def test_wrappers(client: Client, server: RouterServer) -> None:
    assert client.ping() == {"method": "daemon.ping"}
    client.start("p", "mock", "hi", max_turns=2, providerConfig={"turns": 1})
    req = orjson.loads(server.received[-1][1])
    assert req["method"] == "agent.start"
    assert req["params"] == {
        "projectId": "p",
        "provider": "mock",
        "prompt": "hi",
        "maxTurns": 2,
        "providerConfig": {"turns": 1},
    }
    client.messages("s", after_seq=3, limit=10)
    req = orjson.loads(server.received[-1][1])
    assert req["params"] == {"sessionId": "s", "afterSeq": 3, "limit": 10}


def test_closed_client_refuses() -> None:
    c = Client("ipc:///nonexistent/x.sock", timeout=0.05)
    c.close()
    c.close()
    with pytest.raises(RuntimeError):
        c.call("x")


# ----------------------------------------------------------------------------- subscriber


class Publisher:
    """A PUB on a thread: heartbeats every 50 ms plus events queued by the test."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.eseq = 0
        self._queue: list[tuple[str, dict[str, Any]] | int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def publish(self, event: str, data: dict[str, Any], project: str | None = None) -> None:
        with self._lock:
            self._queue.append((event, {"data": data, "project": project}))

    def skip(self, n: int) -> None:
        with self._lock:
            self._queue.append(n)

    def _send(
        self, sock: zmq.Socket[Any], event: str, data: dict[str, Any], project: str | None
    ) -> None:
        self.eseq += 1
        topic = project_topic(project, event) if project else f"daemon/{event}"
        frame = event_frame(event, "boot-1", self.eseq, int(time.time() * 1000), data, project)
        sock.send_multipart([topic.encode(), orjson.dumps(frame)])

    def _run(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        sock = ctx.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(self.url)
        self._ready.set()
        last_beat = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    queued, self._queue = self._queue, []
                for item in queued:
                    if isinstance(item, int):
                        self.eseq += item
                    else:
                        event, spec = item
                        self._send(sock, event, spec["data"], spec["project"])
                if time.monotonic() - last_beat > 0.05:
                    last_beat = time.monotonic()
                    self._send(sock, "daemon.heartbeat", {"live": 0, "lastSeqIds": {}}, None)
                time.sleep(0.005)
        finally:
            sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def publisher(sock_dir: Path) -> Iterator[Publisher]:
    pub = Publisher(f"ipc://{sock_dir}/events.sock")
    yield pub
    pub.close()


def test_subscriber_project_topic(publisher: Publisher) -> None:
    with Subscriber(publisher.url, [project_topic("foo", "")]) as sub:
        sub.wait_connected(timeout=5)
        publisher.publish("agent.status", {"sessionId": "s", "status": "running"}, "bar")
        publisher.publish("agent.status", {"sessionId": "s", "status": "done"}, "foo")
        topic, frame = sub.wait_for(lambda t, f: True, timeout=5)
        assert topic == "project/foo/agent.status"
        assert frame["data"]["status"] == "done"
        assert frame["projectId"] == "foo"
        # heartbeats were only subscribed temporarily
        time.sleep(0.15)
        assert all(not t.startswith("daemon/") for t, _ in sub.drain())
        assert sub.gaps == 0  # not tracked for a prefix subscription
        assert sub.recv(0.05) is None


def test_subscriber_everything_tracks_gaps(publisher: Publisher) -> None:
    with Subscriber(publisher.url) as sub:
        sub.wait_connected(timeout=5)
        sub.drain()
        assert sub.gaps == 0
        publisher.skip(3)
        publisher.publish("notification", {"id": "n"}, "p")
        sub.wait_for(lambda t, f: f["event"] == "notification", timeout=5)
        assert sub.gaps == 1
        assert sub.missed == 3
        assert set(sub.last_eseq) == {"boot-1"}
        # the heartbeat is part of the stream for a "" subscriber
        topic, _ = sub.wait_for(lambda t, f: True, timeout=5)
        assert topic == HEARTBEAT_TOPIC


def test_wait_connected_keeps_events(publisher: Publisher) -> None:
    with Subscriber(publisher.url, ["project/"]) as sub:
        publisher.publish("conflict", {"path": "/a", "sessionIds": []}, "p")
        sub.wait_connected(timeout=5)
        # whatever arrived during the wait is still delivered by recv()
        got = sub.drain()
        assert all(t.startswith("project/") for t, _ in got)


def test_wait_for_and_wait_connected_time_out(sock_dir: Path) -> None:
    with Subscriber(f"ipc://{sock_dir}/none.sock") as sub:
        with pytest.raises(TimeoutError):
            sub.wait_for(lambda t, f: True, timeout=0.05)
        with pytest.raises(TimeoutError):
            sub.wait_connected(timeout=0.05)
        assert sub.recv(0) is None


def test_subscriber_ignores_malformed(sock_dir: Path) -> None:
    url = f"ipc://{sock_dir}/raw.sock"
    ctx: zmq.Context[Any] = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(url)
    try:
        with Subscriber(url) as sub:
            deadline = time.monotonic() + 5
            got = None
            while got is None and time.monotonic() < deadline:
                pub.send_multipart([b"x", b"not json"])
                pub.send_multipart([b"only-one-frame"])
                pub.send_multipart([b"daemon/x", b"[1]"])
                pub.send_multipart([b"daemon/x", orjson.dumps({"event": "x", "eseq": 1})])
                got = sub.recv(0.05)
            assert got == ("daemon/x", {"event": "x", "eseq": 1})
            assert sub.malformed >= 3
    finally:
        pub.close(linger=0)


def test_client_with_subscriber_wait_connected(server: RouterServer, publisher: Publisher) -> None:
    with Client(server.url, timeout=2) as c, Subscriber(publisher.url, [""]) as sub:
        sub.wait_connected(c, timeout=5)
        # the daemon was pinged first
        assert [body(frames)["method"] for frames in server.received] == ["daemon.ping"]
        # the heartbeat that proved the subscription is kept for a "" subscriber:
        # it is the first event recv() gives, and the one whose eseq was tracked
        connected_at = dict(sub.last_eseq)
        assert set(connected_at) == {"boot-1"}
        got = sub.recv(0)
        assert got is not None, "the heartbeat seen while connecting was dropped"
        topic, frame = got
        assert topic == HEARTBEAT_TOPIC and frame["event"] == "daemon.heartbeat"
        assert frame["eseq"] == connected_at["boot-1"]
