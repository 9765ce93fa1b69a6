"""A small synchronous client: :class:`Client` for RPC, :class:`Subscriber` for events.

Used by the CLI and the test-suite. Both classes are thread-confined: a ZeroMQ
socket must be used only by the thread that created it, so create one client
per thread (they share the process-wide ZeroMQ context, which is thread-safe).

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

import zmq

from corral.protocol.envelope import dumps, loads
from corral.protocol.errors import error_from_json
from corral.protocol.events import HEARTBEAT_TOPIC

__all__ = ["Client", "Subscriber"]

Event = tuple[str, dict[str, Any]]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class Client:
    """A JSON-RPC client over a ZeroMQ DEALER socket (``["", payload]`` framing).

    Replies are matched by ``id``; stale replies are discarded. After a timeout the
    socket is rebuilt, so a late answer can never be taken for the next one.
    Thread-confined: use an instance from one thread only.
    """

    def __init__(
        self,
        rpc_url: str,
        timeout: float = 10.0,
        *,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._ids = itertools.count(1)
        self._sock: zmq.Socket[Any] | None = None
        self._sock = self._new_socket()

    # -- socket management -------------------------------------------------------

    def _new_socket(self) -> zmq.Socket[Any]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
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
        self._sock = self._new_socket()

    def close(self) -> None:
        """Close the socket; pending requests are dropped."""
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _send(self, frames: Sequence[bytes], deadline: float) -> None:
        sock = self._socket()
        remaining = max(0.0, deadline - time.monotonic())
        if not sock.poll(int(remaining * 1000), zmq.POLLOUT):
            self.reset()
            raise TimeoutError(f"cannot send to {self.rpc_url}")
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
        if len(frames) == 2 and frames[0] == b"":
            body = frames[1]
        elif len(frames) == 1:
            body = frames[0]
        else:
            return None
        try:
            return loads(body)
        except ValueError:
            return None

    def _await(self, accept: Callable[[object], bool], deadline: float, what: str) -> Any:
        while True:
            frames = self._recv(deadline)
            if frames is None:
                self.reset()
                raise TimeoutError(f"no answer to {what} from {self.rpc_url}")
            reply = self._payload(frames)
            if accept(reply):
                return reply

    # -- JSON-RPC ----------------------------------------------------------------

    def call(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``method``; return its ``result`` or raise the typed :class:`RpcError`.

        Raises TimeoutError when no answer comes in time. An error answer with a
        null id (the daemon could not read the request) is taken as this call's.
        """
        rid = next(self._ids)
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            request["params"] = dict(params)
        deadline = self._deadline(timeout)
        self._send([b"", dumps(request)], deadline)

        def mine(reply: object) -> bool:
            if not isinstance(reply, dict):
                return False
            got = reply.get("id")
            return got == rid or (got is None and "error" in reply)

        reply = self._await(mine, deadline, method)
        if "error" in reply:
            error = reply["error"]
            raise error_from_json(error if isinstance(error, dict) else {})
        result: dict[str, Any] = reply.get("result")
        return result

    def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no id, no answer)."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            request["params"] = dict(params)
        self._send([b"", dumps(request)], self._deadline(None))

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
                req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
                if params is not None:
                    req["params"] = dict(params)
                batch.append(req)
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
        self._send([b"", dumps(batch)], deadline)

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
            reply = self._await(mine, deadline, "batch")
        except TimeoutError:
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

    # -- thin typed wrappers -----------------------------------------------------

    def ping(self, timeout: float | None = None) -> dict[str, Any]:
        """``daemon.ping``."""
        return self.call("daemon.ping", None, timeout)

    def info(self) -> dict[str, Any]:
        """``daemon.info``."""
        return self.call("daemon.info")

    def describe(self) -> dict[str, Any]:
        """``rpc.describe``."""
        return self.call("rpc.describe")

    def shutdown(self) -> dict[str, Any]:
        """``daemon.shutdown``."""
        return self.call("daemon.shutdown")

    def start(self, project_id: str, provider: str, prompt: str, **opts: Any) -> dict[str, Any]:
        """``agent.start``; options by contract name or snake_case (``max_turns``)."""
        params = {"projectId": project_id, "provider": provider, "prompt": prompt}
        params.update({_camel(k): v for k, v in opts.items()})
        return self.call("agent.start", params)

    def prompt(self, project_id: str, prompt: str) -> dict[str, Any]:
        """``agent.prompt``."""
        return self.call("agent.prompt", {"projectId": project_id, "prompt": prompt})

    def stop(self, project_id: str) -> dict[str, Any]:
        """``agent.stop``."""
        return self.call("agent.stop", {"projectId": project_id})

    def session(self, project_id: str) -> dict[str, Any] | None:
        """The project's current session (``session.get``), or None."""
        session: dict[str, Any] | None = self.call("session.get", {"projectId": project_id})[
            "session"
        ]
        return session

    def messages(self, session_id: str, after_seq: int = 0, limit: int = 500) -> dict[str, Any]:
        """``session.messages.load``."""
        return self.call(
            "session.messages.load",
            {"sessionId": session_id, "afterSeq": after_seq, "limit": limit},
        )


class Subscriber:
    """A ZeroMQ SUB socket on the daemon's events; receives ``(topic, frame)``.

    Tracks the last ``eseq`` per boot; ``gaps`` counts jumps (missed events). Since
    ``eseq`` counts the events of all topics, gaps are only tracked when subscribed
    to everything (topic ``""``). Thread-confined: use from one thread only.
    """

    def __init__(
        self,
        events_url: str,
        topics: Iterable[str] = ("",),
        *,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.events_url = events_url
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket[Any] | None = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._topics: list[str] = []
        self._pending: collections.deque[Event] = collections.deque()
        self.last_eseq: dict[str, int] = {}
        """boot -> last eseq seen."""
        self.gaps = 0
        """Number of eseq jumps seen (only when subscribed to everything)."""
        self.missed = 0
        """Number of events the jumps skipped."""
        self.malformed = 0
        """Messages that were not ``[topic, JSON object]`` (ignored)."""
        self._sock.connect(events_url)
        for topic in topics:
            self.subscribe(topic)

    @property
    def topics(self) -> tuple[str, ...]:
        """The caller's subscriptions."""
        return tuple(self._topics)

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
        boot, eseq = frame.get("boot"), frame.get("eseq")
        if not isinstance(eseq, int) or not isinstance(boot, str | int):
            return
        key = str(boot)
        last = self.last_eseq.get(key)
        if last is not None and eseq != last + 1 and "" in self._topics:
            self.gaps += 1
            self.missed += max(0, eseq - last - 1)
        self.last_eseq[key] = eseq if last is None else max(last, eseq)

    def _read(self, deadline: float) -> Event | None:
        """The next well-formed message from the socket (any topic), or None."""
        sock = self._socket()
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not sock.poll(remaining_ms, zmq.POLLIN):
                return None
            frames = sock.recv_multipart()
            if len(frames) != 2:
                self.malformed += 1
                continue
            try:
                topic = frames[0].decode()
                frame = loads(frames[1])
            except ValueError:
                self.malformed += 1
                continue
            if not isinstance(frame, dict):
                self.malformed += 1
                continue
            return topic, frame

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
