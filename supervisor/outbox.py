"""The outbox: how any thread hands replies and events to the router thread.

ZeroMQ sockets belong to one thread. Actors, readers and the store put
replies and publications on a thread-safe queue and poke a wake-up pipe; the
router thread polls that pipe beside its ROUTER socket and drains the queue.
Putting never blocks. Replies have a queue of their own that the router
empties before every publication it sends, so an answer never waits behind a
flood of events (the two travel on different sockets, so a client could never
count on their relative order anyway).
"""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass
from typing import Any

from corral.protocol.errors import RpcError


@dataclass(frozen=True)
class Route:
    """Where an answer goes: the peer, its frame style, the request id, its batch."""

    ident: bytes
    empty_frame: bool
    request_id: Any
    notification: bool = False
    batch: int | None = None


@dataclass(frozen=True)
class ReplyItem:
    route: Route
    result: Any
    error: RpcError | None


@dataclass(frozen=True)
class PublishItem:
    event: str
    data: dict[str, Any]
    project_id: str | None


class RouterOutbox:
    """Implements ``actors.ports.Outbox`` for the router thread."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[ReplyItem | PublishItem] = queue.SimpleQueue()
        self.replies: queue.SimpleQueue[ReplyItem] = queue.SimpleQueue()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self._signalled = False

    def reply(self, to: Any, result: Any = None, error: RpcError | None = None) -> None:
        self.replies.put(ReplyItem(to, result, error))
        self._wake()

    def publish(self, event: str, data: dict[str, Any], project_id: str | None = None) -> None:
        self.queue.put(PublishItem(event, data, project_id))
        self._wake()

    def _wake(self) -> None:
        if not self._signalled:
            self._signalled = True
            try:
                os.write(self.wake_w, b"!")
            except BlockingIOError:
                pass

    def take_wakeups(self) -> None:
        """Router side, before draining the queue: empty the pipe, then clear the flag.

        In this order a put racing us either finds the flag still set (and its item
        is drained right after) or sets it again and writes a fresh byte; clearing
        the flag first could swallow that byte and leave the flag set for good."""
        try:
            while os.read(self.wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        self._signalled = False

    def drain_replies(self) -> list[ReplyItem]:
        """Every reply waiting: replies go out before queued publications."""
        items: list[ReplyItem] = []
        try:
            while True:
                items.append(self.replies.get_nowait())
        except queue.Empty:
            pass
        return items

    def drain(self, limit: int = 1000) -> list[ReplyItem | PublishItem]:
        items: list[ReplyItem | PublishItem] = list(self.drain_replies())
        try:
            while len(items) < limit:
                items.append(self.queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def close(self) -> None:
        for fd in (self.wake_r, self.wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
