"""The synchronous client: :class:`Client` for RPC, :class:`Subscriber` for events.

Used by the CLI and the test-suite; :mod:`corral.protocol.aio` has the same surface
for asyncio. Both classes here are thread-confined: a ZeroMQ socket must be used
only by the thread that created it, so create one client per thread (they share
the process-wide ZeroMQ context, which is thread-safe).

Errors: an error answer raises the typed :class:`~corral.protocol.errors.RpcError`
of its ``data.reason`` (``NoSession``, ``SessionRunning``, ...); no answer in time
raises :class:`DaemonUnreachable` (a ``TimeoutError``).

Pipelining: :meth:`Client.submit` sends a request without waiting and
:meth:`Client.result` collects its answer; :meth:`Client.pipeline` does both for a
list of calls, so N calls cost one round-trip instead of N.

CURVE: on a ``tcp://`` endpoint both classes are CURVE clients when keys are
configured (``curve=``, else ``CORRAL_CURVE_KEY_FILE`` and the server key from
``CORRAL_CURVE_SERVER_KEY`` or ``endpoints.json``; see :mod:`corral.protocol.curve`).
A daemon that does not accept the key answers nothing: :class:`DaemonUnreachable`.

Knowing that a subscriber is connected (ZeroMQ's "slow joiner"): a SUB socket
receives nothing until its subscriptions have reached the daemon's PUB socket,
and events published before that are lost for it. The daemon publishes
``daemon/daemon.heartbeat`` every second; :meth:`Subscriber.wait_connected`
subscribes to it (temporarily, if needed) and waits for one. Subscriptions travel
in order on one connection, so once a heartbeat arrives every earlier
subscription is in effect too. Events of the caller's topics that arrive
meanwhile are kept for :meth:`Subscriber.recv`.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import zmq

from corral.protocol.api import MethodsMixin
from corral.protocol.curve import FROM_ENV, CurveOption, apply_client_curve, client_curve
from corral.protocol.errors import RpcError
from corral.protocol.transport import (
    HEARTBEAT_TOPIC,
    DaemonUnreachable,
    EseqTracker,
    decode_event,
    decode_reply,
    make_request,
    result_of,
)

__all__ = ["Client", "DaemonUnreachable", "Subscriber"]

Event = tuple[str, dict[str, Any]]
Call = tuple[str, Mapping[str, Any] | None]


class Client(MethodsMixin[dict[str, Any]]):
    """A JSON-RPC client over a ZeroMQ DEALER socket (``["", payload]`` framing).

    Replies are matched by ``id``: answers to requests still awaited are kept until
    asked for, any other reply is discarded. After a timeout the socket is rebuilt,
    so a late answer can never be taken for the next one (requests still in flight
    are then abandoned). Thread-confined: use an instance from one thread only.
    """

    def __init__(
        self,
        rpc_url: str,
        timeout: float = 10.0,
        *,
        context: zmq.Context[Any] | None = None,
        curve: CurveOption = FROM_ENV,
    ) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._curve = client_curve(rpc_url, curve)
        self._ids = itertools.count(1)
        self._waiting: set[int] = set()
        self._replies: dict[int, dict[str, Any]] = {}
        self._sock: zmq.Socket[Any] | None = None
        self._sock = self._new_socket()

    # -- socket management -------------------------------------------------------

    def _new_socket(self) -> zmq.Socket[Any]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        apply_client_curve(sock, self.rpc_url, self._curve)
        sock.connect(self.rpc_url)
        return sock

    def _socket(self) -> zmq.Socket[Any]:
        if self._sock is None:
            raise RuntimeError("client is closed")
        return self._sock

    def reset(self) -> None:
        """Drop the socket (and any late replies) and connect a fresh one."""
        if self._sock is not None:
            self._sock.close(linger=0)
        self._waiting.clear()
        self._replies.clear()
        self._sock = self._new_socket()

    def close(self) -> None:
        """Close the socket; pending requests are dropped."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        self._waiting.clear()
        self._replies.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _unreachable(self, timeout: float | None, what: str) -> DaemonUnreachable:
        return DaemonUnreachable(self.rpc_url, self.timeout if timeout is None else timeout, what)

    def _send(self, frames: Sequence[bytes], deadline: float, what: str = "a request") -> None:
        sock = self._socket()
        remaining = max(0.0, deadline - time.monotonic())
        if not sock.poll(int(remaining * 1000), zmq.POLLOUT):
            self.reset()
            raise DaemonUnreachable(self.rpc_url, remaining, what)
        sock.send_multipart(list(frames), flags=zmq.NOBLOCK, copy=False)

    def _recv(self, deadline: float) -> list[bytes] | None:
        sock = self._socket()
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not sock.poll(remaining_ms, zmq.POLLIN):
            return None
        return sock.recv_multipart()

    @staticmethod
    def _payload(frames: list[bytes]) -> object:
        """The decoded reply of a ``["", reply]`` (or bare ``[reply]``) message."""
        return decode_reply(frames)

    def _await(
        self, accept: Callable[[object], bool], deadline: float, what: str, timeout: float | None
    ) -> Any:
        while True:
            frames = self._recv(deadline)
            if frames is None:
                self.reset()
                raise self._unreachable(timeout, what)
            reply = self._payload(frames)
            if accept(reply):
                return reply
            self._keep(reply)

    def _keep(self, reply: object) -> None:
        """Keep the answer of another awaited request (pipelining); drop anything else."""
        if isinstance(reply, dict):
            rid = reply.get("id")
            if isinstance(rid, int) and rid in self._waiting:
                self._replies[rid] = reply

    # -- JSON-RPC ----------------------------------------------------------------

    def submit(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> int:
        """Send a request without waiting for its answer; returns its id for :meth:`result`."""
        rid = next(self._ids)
        self._send([b"", orjson.dumps(make_request(method, params, rid))], self._deadline(timeout))
        self._waiting.add(rid)
        return rid

    def result(self, rid: int, timeout: float | None = None, what: str | None = None) -> Any:
        """The result of the request ``rid`` (see :meth:`submit`), or its typed error.

        An error answer with a null id (the daemon could not read a request) is
        taken as this request's.
        """
        if rid not in self._waiting:
            raise KeyError(f"request {rid} is not awaited")
        reply = self._replies.pop(rid, None)
        if reply is None:

            def mine(got: object) -> bool:
                if not isinstance(got, dict):
                    return False
                answer_id = got.get("id")
                return answer_id == rid or (answer_id is None and "error" in got)

            reply = self._await(mine, self._deadline(timeout), what or f"request {rid}", timeout)
        self._waiting.discard(rid)
        return result_of(reply)

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``method``; return its ``result`` or raise the typed :class:`RpcError`.

        Raises :class:`DaemonUnreachable` (a TimeoutError) when no answer comes in time.
        """
        deadline = self._deadline(timeout)
        rid = next(self._ids)
        self._send([b"", orjson.dumps(make_request(method, params, rid))], deadline, method)
        self._waiting.add(rid)
        remaining = max(0.0, deadline - time.monotonic())
        try:
            result: dict[str, Any] = self.result(rid, remaining, method)
        except DaemonUnreachable:
            raise self._unreachable(timeout, method) from None
        return result

    def pipeline(
        self,
        calls: Iterable[Call],
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Send every ``(method, params)`` at once, then collect the results in order.

        With ``return_exceptions`` a typed error takes its call's place in the list;
        otherwise the first one is raised (after every answer was collected).
        ``timeout`` bounds the whole pipeline.
        """
        deadline = self._deadline(timeout)
        rids = [self.submit(method, params, timeout) for method, params in calls]
        out: list[Any] = []
        first_error: RpcError | None = None
        for rid in rids:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                out.append(self.result(rid, remaining, "a pipeline"))
            except RpcError as exc:
                out.append(exc)
                first_error = first_error or exc
        if first_error is not None and not return_exceptions:
            raise first_error
        return out

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no id, no answer)."""
        self._send([b"", orjson.dumps(make_request(method, params))], self._deadline(None), method)

    def call_batch(
        self,
        entries: Iterable[tuple[str, Mapping[str, Any] | None] | Mapping[str, Any]],
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Send one batch; return the raw responses (any order).

        Entries are ``(method, params)`` pairs (given fresh ids) or raw request
        objects sent as they are. A whole-batch error (e.g. too many entries) is
        returned as a one-element list. When no entry has an id, no answer is
        expected: the call returns ``[]`` after ``timeout`` if none came.
        """
        batch: list[Any] = []
        ids: set[Any] = set()
        expect = False
        for entry in entries:
            if isinstance(entry, tuple):
                method, params = entry
                rid = next(self._ids)
                batch.append(make_request(method, params, rid))
                ids.add(rid)
                expect = True
            else:
                batch.append(dict(entry))
                if "id" in entry:
                    expect = True
                    rid = entry["id"]
                    if isinstance(rid, str | int | float):
                        ids.add(rid)
        deadline = self._deadline(timeout)
        self._send([b"", orjson.dumps(batch)], deadline, "a batch")

        def mine(reply: object) -> bool:
            if isinstance(reply, dict):
                return reply.get("id") is None and "error" in reply
            if isinstance(reply, list):
                return all(
                    isinstance(r, dict) and (r.get("id") in ids or r.get("id") is None)
                    for r in reply
                )
            return False

        try:
            reply = self._await(mine, deadline, "a batch", timeout)
        except DaemonUnreachable:
            if expect:
                raise
            return []
        return [reply] if isinstance(reply, dict) else list(reply)

    # -- raw access, for protocol edge-case tests --------------------------------

    def send_raw(self, frames: list[bytes], timeout: float | None = None) -> list[bytes] | None:
        """Send ``frames`` exactly as given; return the next reply's frames, or None.

        On timeout the socket is rebuilt (so a late reply cannot leak into later calls).
        """
        deadline = self._deadline(timeout)
        self._send(frames, deadline)
        got = self._recv(deadline)
        if got is None:
            self.reset()
        return got

    def request_raw(self, payload: bytes, timeout: float | None = None) -> object:
        """Send ``["", payload]``; return the decoded reply, or None if none came in time."""
        frames = self.send_raw([b"", payload], timeout)
        if frames is None:
            return None
        return self._payload(frames)

    # -- wrappers that unpack their result ---------------------------------------

    def session(self, project_id: str) -> dict[str, Any] | None:
        """The project's current session (``session.get``), or None."""
        session: dict[str, Any] | None = self.get_session(project_id)["session"]
        return session


class Subscriber:
    """A ZeroMQ SUB socket on the daemon's events; receives ``(topic, frame)``.

    Tracks the last ``eseq`` per boot; ``gaps`` counts jumps (missed events). Since
    ``eseq`` counts the events of all topics, gaps are only tracked when subscribed
    to everything (topic ``""``). ``rcvhwm`` bounds the messages queued for this
    subscriber (past it ZeroMQ drops). Thread-confined: use from one thread only.
    """

    def __init__(
        self,
        events_url: str,
        topics: Iterable[str] = ("",),
        *,
        context: zmq.Context[Any] | None = None,
        rcvhwm: int | None = None,
        curve: CurveOption = FROM_ENV,
    ) -> None:
        self.events_url = events_url
        self._ctx = context or zmq.Context.instance()
        keys = client_curve(events_url, curve)
        self._sock: zmq.Socket[Any] | None = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        apply_client_curve(self._sock, events_url, keys)
        if rcvhwm is not None:
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._topics: list[str] = []
        self._pending: collections.deque[Event] = collections.deque()
        self.tracker = EseqTracker()
        """eseq per boot, gaps, daemon restarts."""
        self.malformed = 0
        """Messages that were not ``[topic, JSON object]`` (ignored)."""
        self._sock.connect(events_url)
        for topic in topics:
            self.subscribe(topic)

    @property
    def last_eseq(self) -> dict[str, int]:
        """boot -> last eseq seen."""
        return self.tracker.last_eseq

    @property
    def gaps(self) -> int:
        """Number of eseq jumps seen (only when subscribed to everything)."""
        return self.tracker.gaps

    @property
    def missed(self) -> int:
        """Number of events the jumps skipped."""
        return self.tracker.missed

    @property
    def topics(self) -> tuple[str, ...]:
        """The caller's subscriptions."""
        return tuple(self._topics)

    @property
    def everything(self) -> bool:
        """Subscribed to every topic (so ``eseq`` jumps mean missed events)."""
        return "" in self._topics

    def _socket(self) -> zmq.Socket[Any]:
        if self._sock is None:
            raise RuntimeError("subscriber is closed")
        return self._sock

    def subscribe(self, topic: str) -> None:
        """Add a topic prefix."""
        if topic not in self._topics:
            self._topics.append(topic)
            self._socket().setsockopt(zmq.SUBSCRIBE, topic.encode())

    def unsubscribe(self, topic: str) -> None:
        """Remove a topic prefix."""
        if topic in self._topics:
            self._topics.remove(topic)
            self._socket().setsockopt(zmq.UNSUBSCRIBE, topic.encode())

    def _wanted(self, topic: str) -> bool:
        return any(topic.startswith(t) for t in self._topics)

    def _track(self, frame: dict[str, Any]) -> None:
        self.tracker.track(frame, self.everything)

    def _read(self, deadline: float) -> Event | None:
        """The next well-formed message from the socket (any topic), or None."""
        sock = self._socket()
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not sock.poll(remaining_ms, zmq.POLLIN):
                return None
            got = decode_event(sock.recv_multipart())
            if got is None:
                self.malformed += 1
                continue
            return got

    def recv(self, timeout: float) -> Event | None:
        """The next event of the subscribed topics, or None after ``timeout`` seconds."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            got = self._read(deadline)
            if got is None:
                return None
            if self._wanted(got[0]):
                self._track(got[1])
                return got

    def wait_for(self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float) -> Event:
        """Receive until ``predicate(topic, frame)``; earlier events are discarded.

        Raises TimeoutError when no matching event arrives in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            got = self.recv(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise TimeoutError(f"no matching event within {timeout}s on {self.events_url}")
            if predicate(*got):
                return got

    def drain(self) -> list[Event]:
        """Every event already received, without waiting."""
        out: list[Event] = []
        while (got := self.recv(0)) is not None:
            out.append(got)
        return out

    def wait_connected(self, client: Client | None = None, timeout: float = 5.0) -> None:
        """Block until the subscriptions are in effect at the daemon (see module doc).

        With ``client``, first checks with ``daemon.ping`` that the daemon answers.
        Raises TimeoutError. Heartbeats take up to a second to come.
        """
        deadline = time.monotonic() + timeout
        if client is not None:
            client.ping(timeout)
        temporary = not self._wanted(HEARTBEAT_TOPIC)
        sock = self._socket()
        if temporary:
            sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
        try:
            while True:
                got = self._read(deadline)
                if got is None:
                    raise TimeoutError(f"no heartbeat within {timeout}s on {self.events_url}")
                topic, frame = got
                wanted = self._wanted(topic)
                if wanted:
                    self._track(frame)
                    self._pending.append(got)
                if topic == HEARTBEAT_TOPIC:
                    return
        finally:
            if temporary:
                sock.setsockopt(zmq.UNSUBSCRIBE, HEARTBEAT_TOPIC.encode())

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
