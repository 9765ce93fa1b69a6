"""The router thread: owner of the ROUTER (RPC) and PUB (events) sockets.

It decodes and validates every request itself (so malformed input is answered
here and never reaches an actor), answers what it can itself (ping, describe,
``session.get`` from the session board), then hands each other call on with
one ``tell`` and goes back to polling: it never waits for an actor. Replies and events come
back through the :class:`~supervisor.outbox.RouterOutbox`. Batches are
collected here until their last entry is answered. ``eseq`` is assigned here,
in publish order, so it rises by exactly one per published event.

Socket security is set up here too: a ``tcp://`` socket is made a CURVE server
by the daemon's ``curve`` (see ``supervisor/curve.py``) before it binds, and an
``ipc://`` socket file is made 0600 once bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from corral.actors.board import SessionBoard
from corral.actors.messages import Request
from corral.actors.reader import Query
from corral.protocol import envelope, methods
from corral.protocol import events as event_defs
from corral.protocol.errors import (
    InternalError,
    InvalidRequest,
    Overloaded,
    RpcError,
    ShuttingDown,
)
from corral.supervisor import dispatch
from corral.supervisor.outbox import PublishItem, ReplyItem, Route, RouterOutbox

log = logging.getLogger("corral.router")

REFUSED_WHILE_STOPPING = frozenset({"agent.start", "agent.prompt", "session.restore"})
MAX_IN_FLIGHT = 10_000
PUB_HWM = 1_000
"""Events queued per subscriber before PUB drops for it; an event is at most about
64 KiB (actors.session_write.EVENT_MAX_BYTES), so about 64 MiB per subscriber."""
RPC_HWM = 1_000
"""Replies queued per RPC peer before ROUTER drops for it (and requests queued per
peer); a reply is at most 1 MiB (a request) or a page of session.messages.load."""
MAX_ZMQ_MESSAGE = 16 * 1024 * 1024
OUTBOX_SLICE = 500


@dataclass
class _Batch:
    ident: bytes
    empty_frame: bool
    remaining: int
    responses: list[dict[str, Any]] = field(default_factory=list)


class Router:
    """Binds the sockets in :meth:`start` and runs the loop on its own thread."""

    def __init__(
        self,
        *,
        ctx: zmq.Context[Any],
        rpc_url: str,
        events_url: str,
        outbox: RouterOutbox,
        registry: Any,
        readers: Any,
        boot: str,
        on_shutdown: Callable[[], None],
        curve: Any = None,
        board: SessionBoard | None = None,
    ) -> None:
        self._ctx = ctx
        self._curve = curve
        self.rpc_url = rpc_url
        self.events_url = events_url
        self._outbox = outbox
        self._registry = registry
        self._readers = readers
        self._board = board
        self._boot = boot
        self._on_shutdown = on_shutdown
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._eseq = 0
        self._batches: dict[int, _Batch] = {}
        self._next_batch = 0
        self._in_flight = 0
        self.stopping = False
        self._rpc: zmq.Socket[Any] | None = None
        self._pub: zmq.Socket[Any] | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def boot(self) -> str:
        return self._boot

    def request_shutdown(self) -> None:
        """daemon.shutdown: refuse new work from now on and ask the daemon to stop."""
        self.stopping = True
        self._on_shutdown()

    def start(self) -> None:
        rpc = self._ctx.socket(zmq.ROUTER)
        rpc.setsockopt(zmq.LINGER, 0)
        rpc.setsockopt(zmq.MAXMSGSIZE, MAX_ZMQ_MESSAGE)
        rpc.setsockopt(zmq.SNDHWM, RPC_HWM)
        rpc.setsockopt(zmq.RCVHWM, RPC_HWM)
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 500)
        pub.setsockopt(zmq.SNDHWM, PUB_HWM)
        try:
            for sock, url in ((rpc, self.rpc_url), (pub, self.events_url)):
                if url.startswith("tcp://") and self._curve is not None:
                    self._curve.secure(sock)
            rpc.bind(self.rpc_url)
            pub.bind(self.events_url)
        except zmq.ZMQError:
            rpc.close()
            pub.close()
            raise
        self.rpc_url = rpc.getsockopt_string(zmq.LAST_ENDPOINT) or self.rpc_url
        self.events_url = pub.getsockopt_string(zmq.LAST_ENDPOINT) or self.events_url
        for url in (self.rpc_url, self.events_url):
            _owner_only(url)
        self._rpc, self._pub = rpc, pub
        self._thread = threading.Thread(target=self._run, name="corral-router", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what the outbox holds, then close the sockets (on the router thread)."""
        self._stop.set()
        self._outbox._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        assert self._rpc is not None and self._pub is not None
        poller = zmq.Poller()
        poller.register(self._rpc, zmq.POLLIN)
        poller.register(self._outbox.wake_r, zmq.POLLIN)
        backlog = False
        try:
            while not self._stop.is_set():
                # With a backlog, only peek at the sockets: requests get their turn
                # between bounded slices of outbox work (fair under a flood).
                ready = dict(poller.poll(0 if backlog else 250))
                if self._rpc in ready:
                    self._read_requests()
                if self._outbox.wake_r in ready:
                    self._outbox.take_wakeups()
                backlog = self._flush_outbox()
            self._outbox.take_wakeups()
            while self._flush_outbox():
                pass
        except Exception:
            log.exception("router loop crashed")
        finally:
            self._rpc.close()
            self._pub.close()

    def _read_requests(self) -> None:
        assert self._rpc is not None
        rpc = self._rpc
        for _ in range(1000):
            # ZMQ_EVENTS is read holding the GIL; recv (like every pyzmq send,
            # recv and poll) releases it, and under load each release costs a
            # wait for the GIL: only recv what is there.
            if not _readable(rpc):
                return
            try:
                frames = rpc.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except Exception:
                log.exception("router: request handling failed")

    def _flush_outbox(self) -> bool:
        """Deliver one bounded slice of the outbox; True if more may be waiting."""
        items = self._outbox.drain(OUTBOX_SLICE)
        rpc = self._rpc
        assert rpc is not None
        for item in items:
            # Requests and replies get their turn between outbox items, not only
            # between slices: under a contended GIL a slice of publications can
            # take hundreds of ms (each send waits to get the GIL back).
            if _readable(rpc):
                self._read_requests()
            for reply in self._outbox.drain_replies():
                try:
                    self._deliver(reply)
                except Exception:
                    log.exception("router: delivering a reply failed")
            try:
                if isinstance(item, ReplyItem):
                    self._deliver(item)
                else:
                    self._publish(item)
            except Exception:
                log.exception("router: delivering %r failed", type(item).__name__)
        return len(items) >= OUTBOX_SLICE

    # ------------------------------------------------------------ requests

    def _handle(self, frames: list[bytes]) -> None:
        ident, rest = frames[0], frames[1:]
        if len(rest) == 2 and rest[0] == b"":
            empty_frame, payload = True, rest[1]
        elif len(rest) == 1:
            empty_frame, payload = False, rest[0]
        else:
            empty_frame = bool(rest) and rest[0] == b""
            error = InvalidRequest(f"expected one request frame, got {len(rest)} frames")
            self._send(ident, empty_frame, envelope.error_response(None, error))
            return
        decoded = envelope.decode(payload)
        if not decoded.batch:
            entry = decoded.entries[0]
            if isinstance(entry, envelope.Rejected):
                self._send(ident, empty_frame, envelope.error_response(entry.id, entry.error))
                return
            route = Route(ident, empty_frame, entry.id, entry.notification)
            self._dispatch(entry, route)
            return
        batch_id = self._next_batch
        self._next_batch += 1
        expected = sum(
            1 for e in decoded.entries if isinstance(e, envelope.Rejected) or not e.notification
        )
        if expected == 0:
            # A batch of notifications only: execute, answer nothing.
            for e in decoded.entries:
                if isinstance(e, envelope.Call):
                    self._dispatch(e, Route(ident, empty_frame, e.id, True))
            return
        self._batches[batch_id] = _Batch(ident, empty_frame, expected)
        for e in decoded.entries:
            if isinstance(e, envelope.Rejected):
                self._batch_add(batch_id, envelope.error_response(e.id, e.error))
            else:
                route = Route(
                    ident, empty_frame, e.id, e.notification, None if e.notification else batch_id
                )
                self._dispatch(e, route)

    def _dispatch(self, call: envelope.Call, route: Route) -> None:
        try:
            params = methods.validate_params(call.method, call.params)
            if self.stopping and call.method in REFUSED_WHILE_STOPPING:
                raise ShuttingDown()
            handler = dispatch.TABLE[call.method]
            if handler.target is dispatch.Target.ROUTER:
                self._answer(route, handler.function(self, params))
                return
            if handler.fast is not None and self._board is not None:
                result = handler.fast(self._board, params)
                if result is not None:
                    self._answer(route, result)
                    return
            if self._in_flight >= MAX_IN_FLIGHT:
                raise Overloaded("too many requests in flight; retry later")
            self._in_flight += 1
            if handler.target is dispatch.Target.READER:
                self._readers.tell(Query(handler.function, params, route, call.method))
            else:
                self._registry.tell(Request(handler.function, params, route, call.method))
        except RpcError as exc:
            self._answer(route, error=exc)
        except Exception as exc:
            log.exception("router: dispatch of %s failed", call.method)
            self._answer(route, error=InternalError(str(exc)))

    def _deliver(self, item: ReplyItem) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._answer(item.route, item.result, item.error)

    def _answer(self, route: Route, result: Any = None, error: RpcError | None = None) -> None:
        if route.notification:
            return
        response = (
            envelope.error_response(route.request_id, error)
            if error is not None
            else envelope.result_response(route.request_id, result)
        )
        if route.batch is not None:
            self._batch_add(route.batch, response)
        else:
            self._send(route.ident, route.empty_frame, response)

    def _batch_add(self, batch_id: int, response: dict[str, Any]) -> None:
        batch = self._batches.get(batch_id)
        if batch is None:
            return
        batch.responses.append(response)
        batch.remaining -= 1
        if batch.remaining <= 0:
            del self._batches[batch_id]
            self._send(batch.ident, batch.empty_frame, batch.responses)

    def _send(self, ident: bytes, empty_frame: bool, response: Any) -> None:
        assert self._rpc is not None
        payload = envelope.dumps(response)
        frames = [ident, b"", payload] if empty_frame else [ident, payload]
        try:
            self._rpc.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            # Promise 3: a reply to a vanished or stuck client is dropped.
            log.debug("router: reply dropped: %s", exc)

    # ------------------------------------------------------------ events

    def _publish(self, item: PublishItem) -> None:
        assert self._pub is not None
        self._eseq += 1
        frame = event_defs.event_frame(
            item.event, self._boot, self._eseq, _now_ms(), item.data, item.project_id
        )
        if item.project_id is not None and item.event not in event_defs.DAEMON_EVENTS:
            topic = event_defs.project_topic(item.project_id, item.event)
        else:
            topic = event_defs.daemon_topic(item.event)
        try:
            self._pub.send_multipart([topic.encode(), envelope.dumps(frame)], zmq.NOBLOCK)
        except zmq.Again:
            pass  # Promise 3: PUB drops for a subscriber past its high-water mark.


def _owner_only(url: str) -> None:
    """An ipc socket file: read and write for its owner only (0600)."""
    if url.startswith("ipc://") and not url.startswith("ipc://@"):
        with contextlib.suppress(OSError):
            os.chmod(url[len("ipc://") :], 0o600)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _readable(sock: zmq.Socket[bytes]) -> bool:
    """Whether a message waits on ``sock`` (``ZMQ_EVENTS``: read holding the GIL)."""
    events = sock.getsockopt(zmq.EVENTS)
    return isinstance(events, int) and bool(events & zmq.POLLIN)
