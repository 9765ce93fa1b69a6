"""The asyncio client: :class:`AsyncClient` and :class:`AsyncSubscriber` (zmq.asyncio).

The same surface as :mod:`corral.protocol.client`, with coroutines: ``await
client.call(...)``, ``await client.stop("p")``, ``await sub.recv(1.0)``. Many
tasks may call one :class:`AsyncClient` at once: a single reader task hands each
answer to the request with its ``id``, so concurrent calls are pipelined on one
socket. No answer in time raises :class:`DaemonUnreachable`; a late answer is
dropped by id. Use an instance from one event loop only. CURVE keys for a
``tcp://`` endpoint are taken as in the synchronous client (``curve=``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
import zmq
import zmq.asyncio

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

__all__ = ["AsyncClient", "AsyncSubscriber", "DaemonUnreachable"]

Event = tuple[str, dict[str, Any]]
Call = tuple[str, Mapping[str, Any] | None]


class AsyncClient(MethodsMixin[Awaitable[dict[str, Any]]]):
    """A JSON-RPC client over a DEALER socket for asyncio; concurrent calls share it."""

    def __init__(
        self,
        rpc_url: str,
        timeout: float = 10.0,
        *,
        context: zmq.asyncio.Context | None = None,
        curve: CurveOption = FROM_ENV,
    ) -> None:
        self.rpc_url = rpc_url
        self.timeout = timeout
        self._ctx = context or zmq.asyncio.Context.instance()
        self._ids = itertools.count(1)
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._batches: dict[int, tuple[frozenset[Any], asyncio.Future[Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        keys = client_curve(rpc_url, curve)
        self._sock: zmq.asyncio.Socket | None = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        apply_client_curve(self._sock, rpc_url, keys)
        self._sock.connect(rpc_url)

    def _socket(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            raise RuntimeError("client is closed")
        return self._sock

    async def _read_loop(self) -> None:
        sock = self._socket()
        while True:
            reply = decode_reply(await sock.recv_multipart())
            if isinstance(reply, list):
                self._settle_batch(reply)
                continue
            if not isinstance(reply, dict):
                continue
            rid = reply.get("id")
            if rid is None and "error" in reply:
                # the daemon could not read some request: give it to the oldest one
                if self._batches:
                    self._settle(self._batches.pop(next(iter(self._batches)))[1], reply)
                    continue
                rid = next(iter(self._futures), None)
            future = self._futures.pop(rid, None) if isinstance(rid, int) else None
            if future is not None:
                self._settle(future, reply)

    @staticmethod
    def _settle(future: asyncio.Future[Any], reply: Any) -> None:
        if not future.done():
            future.set_result(reply)

    def _settle_batch(self, replies: list[Any]) -> None:
        ids = {r.get("id") for r in replies if isinstance(r, dict)}
        for key, (wanted, future) in list(self._batches.items()):
            if ids <= wanted | {None}:
                del self._batches[key]
                self._settle(future, replies)
                return

    def _ensure_reader(self) -> None:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    async def _exchange(
        self,
        payload: Any,
        rid: int,
        timeout: float | None,
        what: str,
        batch_ids: frozenset[Any] | None = None,
    ) -> Any:
        limit = self.timeout if timeout is None else timeout
        self._ensure_reader()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if batch_ids is None:
            self._futures[rid] = future
        else:
            self._batches[rid] = (batch_ids, future)
        try:
            async with asyncio.timeout(limit):
                await self._socket().send_multipart([b"", orjson.dumps(payload)])
                return await future
        except TimeoutError:
            raise DaemonUnreachable(self.rpc_url, limit, what) from None
        finally:
            self._futures.pop(rid, None)
            self._batches.pop(rid, None)

    async def call(
        self, method: str, params: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Call ``method``; return its ``result`` or raise the typed :class:`RpcError`.

        Raises :class:`DaemonUnreachable` when no answer comes in time.
        """
        rid = next(self._ids)
        reply = await self._exchange(make_request(method, params, rid), rid, timeout, method)
        result: dict[str, Any] = result_of(reply)
        return result

    async def pipeline(
        self,
        calls: Iterable[Call],
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Every ``(method, params)`` in flight at once; the results in order.

        With ``return_exceptions`` a typed error takes its call's place in the list;
        otherwise the first one is raised once all answers are in.
        """
        results = await asyncio.gather(
            *(self.call(method, params, timeout) for method, params in calls),
            return_exceptions=True,
        )
        for item in results:
            if isinstance(item, BaseException) and not isinstance(item, RpcError):
                raise item
        if not return_exceptions:
            for item in results:
                if isinstance(item, RpcError):
                    raise item
        return list(results)

    async def call_batch(
        self,
        entries: Iterable[tuple[str, Mapping[str, Any] | None] | Mapping[str, Any]],
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON-RPC batch; the raw responses (any order), as the sync ``call_batch``.

        When no entry has an id no answer is expected: ``[]`` after ``timeout`` if
        none came (an error about the whole batch is returned as a one-element list).
        """
        batch: list[Any] = []
        ids: set[Any] = set()
        for entry in entries:
            if isinstance(entry, tuple):
                rid = next(self._ids)
                batch.append(make_request(entry[0], entry[1], rid))
                ids.add(rid)
            else:
                batch.append(dict(entry))
                if "id" in entry:
                    ids.add(entry["id"])
        key = next(self._ids)
        try:
            reply = await self._exchange(batch, key, timeout, "a batch", frozenset(ids))
        except DaemonUnreachable:
            if ids:
                raise
            return []
        return [reply] if isinstance(reply, dict) else list(reply)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no id, no answer)."""
        await self._socket().send_multipart([b"", orjson.dumps(make_request(method, params))])

    async def session(self, project_id: str) -> dict[str, Any] | None:
        """The project's current session (``session.get``), or None."""
        got = await self.call("session.get", {"projectId": project_id})
        session: dict[str, Any] | None = got["session"]
        return session

    async def aclose(self) -> None:
        """Stop the reader task and close the socket; pending calls are cancelled."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        for future in self._futures.values():
            future.cancel()
        for _ids, batch in self._batches.values():
            batch.cancel()
        self._futures.clear()
        self._batches.clear()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncSubscriber:
    """A SUB socket on the daemon's events for asyncio; ``await recv(timeout)``.

    Tracks ``eseq`` like :class:`corral.protocol.client.Subscriber` (gaps count only
    when subscribed to everything, topic ``""``).
    """

    def __init__(
        self,
        events_url: str,
        topics: Iterable[str] = ("",),
        *,
        context: zmq.asyncio.Context | None = None,
        rcvhwm: int | None = None,
        curve: CurveOption = FROM_ENV,
    ) -> None:
        self.events_url = events_url
        self._ctx = context or zmq.asyncio.Context.instance()
        keys = client_curve(events_url, curve)
        self._sock: zmq.asyncio.Socket | None = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        apply_client_curve(self._sock, events_url, keys)
        if rcvhwm is not None:
            self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._topics: list[str] = []
        self._pending: collections.deque[Event] = collections.deque()
        self.tracker = EseqTracker()
        self.malformed = 0
        self._sock.connect(events_url)
        for topic in topics:
            self.subscribe(topic)

    @property
    def gaps(self) -> int:
        """Number of eseq jumps seen (only when subscribed to everything)."""
        return self.tracker.gaps

    @property
    def everything(self) -> bool:
        """Subscribed to every topic (so ``eseq`` jumps mean missed events)."""
        return "" in self._topics

    @property
    def topics(self) -> tuple[str, ...]:
        """The caller's subscriptions."""
        return tuple(self._topics)

    def _socket(self) -> zmq.asyncio.Socket:
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

    async def _read(self, deadline: float) -> Event | None:
        sock = self._socket()
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            if not await sock.poll(remaining_ms):
                return None
            got = decode_event(await sock.recv_multipart())
            if got is None:
                self.malformed += 1
                continue
            return got

    async def recv(self, timeout: float) -> Event | None:
        """The next event of the subscribed topics, or None after ``timeout`` seconds."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            got = await self._read(deadline)
            if got is None:
                return None
            if self._wanted(got[0]):
                self.tracker.track(got[1], self.everything)
                return got

    async def wait_for(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float
    ) -> Event:
        """Receive until ``predicate(topic, frame)``; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            got = await self.recv(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise TimeoutError(f"no matching event within {timeout}s on {self.events_url}")
            if predicate(*got):
                return got

    async def wait_connected(self, client: AsyncClient | None = None, timeout: float = 5.0) -> None:
        """Wait until the subscriptions are in effect (a heartbeat arrived); TimeoutError."""
        deadline = time.monotonic() + timeout
        if client is not None:
            await client.ping(timeout)
        temporary = not self._wanted(HEARTBEAT_TOPIC)
        sock = self._socket()
        if temporary:
            sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
        try:
            while True:
                got = await self._read(deadline)
                if got is None:
                    raise TimeoutError(f"no heartbeat within {timeout}s on {self.events_url}")
                topic, frame = got
                if self._wanted(topic):
                    self.tracker.track(frame, self.everything)
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

    async def __aenter__(self) -> AsyncSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
