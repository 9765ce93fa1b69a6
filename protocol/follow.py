"""Following one session, or a project's sessions: snapshot + updates (contract promise 2).

:class:`SessionFollower` (sync) and :class:`AsyncSessionFollower` (asyncio) load
what is stored, then apply events, and yield every message exactly once in seqId
order. They resync from storage (``session.messages.load(afterSeq = last seqId
yielded)``) whenever something may have been missed: an ``eseq`` jump (when
subscribed to everything), a seqId that skips ahead, a heartbeat whose
``lastSeqIds`` is ahead, a new daemon run (``boot``). A ``session.get`` every
``check_interval`` seconds (and whenever a status event may be stale) catches a
lost status event. Duplicates (events of messages already loaded) are dropped
by seqId.

Following a project (no ``session_id``) follows its current session and moves
on to the next one when a new session starts there. ``until_turn_end`` stops once
the session is ``done`` or ``error`` *and* every stored message was yielded.

The logic is written once, as a generator that asks for I/O (:class:`Call`,
:class:`Recv`) and yields :class:`Update` values; the two classes only run it.
``SessionFollower.feed`` lets a caller that reads the events itself (``corral
watch``) drive it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, NamedTuple

from corral.protocol.aio import AsyncClient, AsyncSubscriber
from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import RpcError
from corral.protocol.transport import EseqTracker

__all__ = ["TERMINAL", "AsyncSessionFollower", "SessionFollower", "Update"]

TERMINAL = ("done", "error")
Event = tuple[str, dict[str, Any]]


class Update(NamedTuple):
    """One step of a followed session.

    ``kind`` is ``"session"`` (now following ``session_id``; ``session`` is its
    Session when known), ``"message"`` (``message`` is the next AgentMessage) or
    ``"status"`` (the session's status changed; ``error`` is set for ``error``).
    """

    kind: str
    session_id: str
    message: dict[str, Any] | None = None
    status: str | None = None
    error: str | None = None
    session: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON object for NDJSON output: ``{"kind", "sessionId", ...}``."""
        out: dict[str, Any] = {"kind": self.kind, "sessionId": self.session_id}
        if self.message is not None:
            out["message"] = self.message
        if self.status is not None:
            out["status"] = self.status
        if self.error is not None:
            out["error"] = self.error
        if self.session is not None:
            out["session"] = self.session
        return out


class Call(NamedTuple):
    """The logic asks for an RPC; it is sent back the result or the RpcError."""

    method: str
    params: dict[str, Any]


class Recv(NamedTuple):
    """The logic asks for the next event (or None after ``timeout`` seconds)."""

    timeout: float


Op = Call | Recv | Update
Logic = Generator[Op, Any, None]


class _Logic:
    """The follower's state and rules, free of I/O (see the module doc)."""

    def __init__(
        self,
        project_id: str,
        session_id: str | None,
        *,
        after_seq: int | None,
        backlog: int | None,
        check_interval: float,
        page_size: int,
        everything: bool,
    ) -> None:
        self.project_id = project_id
        self.session_id = session_id
        self.pinned = session_id is not None
        self.after_seq = after_seq
        self.backlog = backlog
        self.check_interval = check_interval
        self.page_size = page_size
        self.everything = everything
        self.tracker = EseqTracker()
        self.last = 0
        """seqId of the last message yielded."""
        self.target = 0
        """Highest seqId known to exist (from checks, pages and heartbeats)."""
        self.status: str | None = None
        self.error: str | None = None
        self.reported: str | None = None
        self.gone = False
        """The followed session was purged."""
        self.resyncs = 0
        self._started = False
        self._left: dict[str, int | None] = {}
        """Sessions a project follower moved away from -> the eseq at that moment."""
        self._need_resync = False
        self._need_check = False
        self._next_check = 0.0

    # -- the loop ----------------------------------------------------------------

    def run(self, until_turn_end: bool) -> Logic:
        if self._started:  # a second run goes on from where the first stopped
            self._need_check = self._need_resync = True
        else:
            yield from self._bootstrap()
            self._started = True
        while True:
            if self._need_check or time.monotonic() >= self._next_check:
                yield from self._check()
            if self._need_resync:
                yield from self._resync()
            if self.session_id is not None:
                yield from self._report_status()
                if until_turn_end and self._turn_over():
                    return
            timeout = min(0.5, max(0.0, self._next_check - time.monotonic()))
            got = yield Recv(timeout)
            if got is not None:
                yield from self._on_event(*got)

    def _turn_over(self) -> bool:
        if self.gone:
            return True
        return self.reported in TERMINAL and self.last >= self.target and not self._need_check

    # -- checks and resyncs ------------------------------------------------------

    def _bootstrap(self) -> Logic:
        session = yield from self._find_session()
        if session is None and not self.pinned:
            got = yield Call("session.load", {"projectId": self.project_id})
            session = None if isinstance(got, RpcError) else got.get("session")
        if session is None:
            self._next_check = time.monotonic() + self.check_interval
            return
        self.session_id = session["sessionId"]
        self._apply(session)
        if self.after_seq is not None:
            self.last = self.after_seq
        elif self.backlog is not None:
            self.last = max(0, int(session.get("lastSeqId") or 0) - self.backlog)
        yield Update("session", session["sessionId"], session=session)
        yield from self._resync()
        self._next_check = time.monotonic() + self.check_interval

    def _find_session(self) -> Generator[Op, Any, dict[str, Any] | None]:
        """The followed session, or the project's current one when following the project.

        A followed session that is no longer current is looked up among the stored
        ones (so its final status is known); None when there is none.
        """
        got = yield Call("session.get", {"projectId": self.project_id})
        current = None if isinstance(got, RpcError) else got.get("session")
        if current is not None and (current["sessionId"] == self.session_id or not self.pinned):
            return dict(current)
        if self.session_id is None:
            return None
        listed = yield Call("session.list", {"projectId": self.project_id, "limit": 500})
        if isinstance(listed, RpcError):
            return None
        for session in listed.get("sessions", []):
            if session.get("sessionId") == self.session_id:
                return dict(session)
        return None

    def _check(self) -> Logic:
        self._need_check = False
        self._next_check = time.monotonic() + self.check_interval
        session = yield from self._find_session()
        if session is None:
            self.gone = self.session_id is not None
            return
        if session["sessionId"] != self.session_id:
            yield from self._switch(session["sessionId"], 1, session)
            return
        self._apply(session)
        if self.target > self.last:
            self._need_resync = True

    def _apply(self, session: dict[str, Any]) -> None:
        self.status = session.get("status")
        self.error = session.get("error")
        self.target = max(self.target, int(session.get("lastSeqId") or 0))

    def _resync(self) -> Logic:
        self._need_resync = False
        if self.session_id is None:
            return
        self.resyncs += 1
        while True:
            page = yield Call(
                "session.messages.load",
                {"sessionId": self.session_id, "afterSeq": self.last, "limit": self.page_size},
            )
            if isinstance(page, RpcError):
                self.gone = True
                return
            messages = page.get("messages", [])
            self.target = max(self.target, int(page.get("lastSeqId") or 0))
            for message in messages:
                yield from self._emit(message)
            if not page.get("hasMore") or not messages:
                return

    def _emit(self, message: dict[str, Any]) -> Logic:
        seq = message.get("seqId")
        if not isinstance(seq, int) or seq <= self.last or self.session_id is None:
            return
        self.last = seq
        self.target = max(self.target, seq)
        yield Update("message", self.session_id, message=message)

    def _switch(self, session_id: str, first_seq: int, session: dict[str, Any] | None) -> Logic:
        if self.session_id is not None:
            boot = self.tracker.boot
            self._left[self.session_id] = (
                self.tracker.last_eseq.get(boot) if boot is not None else None
            )
        self.session_id = session_id
        self.last = max(0, first_seq - 1 - self.backlog) if self.backlog is not None else 0
        self.target = 0
        self.status = self.error = self.reported = None
        if session is not None:
            self._apply(session)
        self._need_resync = True
        self._need_check = session is None
        yield Update("session", session_id, session=session)

    def _starts_turn(
        self, session_id: str, event: Any, data: dict[str, Any], frame: dict[str, Any]
    ) -> bool:
        """Whether an event of another session shows a new turn there (so a project
        follower moves to it): its status became ``running``, or it got a prompt.

        Events of a session this follower left are older than the switch unless
        their ``eseq`` is larger (a restored session prompted again).
        """
        if event == "agent.status":
            fresh = data.get("status") == "running"
        else:
            messages = data.get("messages") or []
            fresh = any(isinstance(m, dict) and m.get("role") == "user" for m in messages)
        if not fresh or session_id not in self._left:
            return fresh
        left_at = self._left[session_id]
        eseq = frame.get("eseq")
        return left_at is not None and isinstance(eseq, int) and eseq > left_at

    def _report_status(self) -> Logic:
        if self.session_id is None or self.status == self.reported or self.status is None:
            return
        if self.status in TERMINAL and (self.last < self.target or self._need_resync):
            return  # the messages first
        self.reported = self.status
        yield Update("status", self.session_id, status=self.status, error=self.error)

    # -- events ------------------------------------------------------------------

    def _on_event(self, topic: str, frame: dict[str, Any]) -> Logic:
        if self.tracker.track(frame, self.everything):
            self._need_resync = self._need_check = True
        event = frame.get("event")
        data = frame.get("data")
        if not isinstance(data, dict):
            return
        if event == "daemon.heartbeat":
            seqs = data.get("lastSeqIds")
            known = seqs.get(self.session_id) if isinstance(seqs, dict) else None
            if isinstance(known, int) and known > self.last:
                self.target = max(self.target, known)
                self._need_resync = True
            return
        if event in ("daemon.started", "daemon.stopping"):
            self._need_check = True
            return
        if frame.get("projectId") != self.project_id:
            return
        session_id = data.get("sessionId")
        if event not in ("agent.message", "agent.status") or not isinstance(session_id, str):
            return
        if session_id != self.session_id:
            if self.pinned or not self._starts_turn(session_id, event, data, frame):
                return  # another session's (or an older) event
            messages = data.get("messages") or [{}]
            first = messages[0].get("seqId") if isinstance(messages[0], dict) else None
            yield from self._switch(session_id, first if isinstance(first, int) else 1, None)
            if event == "agent.status":
                return
        if event == "agent.message":
            for message in data.get("messages", []):
                seq = message.get("seqId") if isinstance(message, dict) else None
                if not isinstance(seq, int) or seq <= self.last:
                    continue
                if seq != self.last + 1 or self._need_resync or message.get("truncated"):
                    # a gap, or a text cut in the event: load it whole from storage
                    self.target = max(self.target, seq)
                    self._need_resync = True
                    return
                yield from self._emit(message)
        else:
            status = data.get("status")
            if status in TERMINAL:
                self._need_check = True  # confirm it, with the session's last seqId
            elif isinstance(status, str):
                self.status, self.error = status, None


class SessionFollower:
    """Follow a session (or a project's sessions) with the sync client.

    ``events`` is a :class:`Subscriber` (used as it is) or an events URL (the
    follower then subscribes to everything, so ``eseq`` jumps are seen, and closes
    that subscriber in :meth:`close`). Without ``session_id`` the project's current
    session is followed, and the next one when it starts. ``after_seq`` skips the
    stored messages up to that seqId; ``backlog`` keeps only the last N of them.
    """

    def __init__(
        self,
        client: Client,
        events: Subscriber | str,
        project_id: str,
        session_id: str | None = None,
        *,
        after_seq: int | None = None,
        backlog: int | None = None,
        check_interval: float = 2.0,
        page_size: int = 500,
        rcvhwm: int | None = None,
    ) -> None:
        self.client = client
        self._own = isinstance(events, str)
        self.subscriber = (
            Subscriber(events, [""], rcvhwm=rcvhwm) if isinstance(events, str) else events
        )
        self._logic = _Logic(
            project_id,
            session_id,
            after_seq=after_seq,
            backlog=backlog,
            check_interval=check_interval,
            page_size=page_size,
            everything=self.subscriber.everything,
        )
        self._fed: Logic | None = None

    @property
    def session_id(self) -> str | None:
        """The session followed now (None while the project has none)."""
        return self._logic.session_id

    @property
    def status(self) -> str | None:
        """Its last known status."""
        return self._logic.status

    @property
    def error(self) -> str | None:
        """Its error, when the status is ``error``."""
        return self._logic.error

    @property
    def last_seq(self) -> int:
        """The seqId of the last message yielded."""
        return self._logic.last

    @property
    def resyncs(self) -> int:
        """How many times messages were loaded from storage (the snapshot included)."""
        return self._logic.resyncs

    def _do(self, op: Call | Recv) -> Any:
        if isinstance(op, Recv):
            return self.subscriber.recv(op.timeout)
        try:
            return self.client.call(op.method, op.params)
        except RpcError as exc:
            return exc

    def updates(self, until_turn_end: bool = False) -> Iterator[Update]:
        """Every :class:`Update`, in order; endless unless ``until_turn_end``."""
        logic = self._logic.run(until_turn_end)
        value: Any = None
        while True:
            try:
                op = logic.send(value)
            except StopIteration:
                return
            if isinstance(op, Update):
                value = None
                yield op
            else:
                value = self._do(op)

    def messages(self, until_turn_end: bool = False) -> Iterator[dict[str, Any]]:
        """Only the messages (AgentMessage objects), in seqId order."""
        for update in self.updates(until_turn_end):
            if update.message is not None:
                yield update.message

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.messages()

    def feed(self, event: Event | None) -> list[Update]:
        """Drive the follower with an event read by the caller (None: nothing came).

        For a caller that reads the subscriber itself: pass it every event (of
        every topic) and call this with None when idle; returns what it yields.
        """
        out: list[Update] = []
        try:
            if self._fed is None:
                self._fed = self._logic.run(False)
                self._until_recv(next(self._fed), out)
            self._until_recv(self._fed.send(event), out)
        except BaseException:
            # e.g. DaemonUnreachable: the next feed starts over (from the last seqId)
            if self._fed is not None:
                self._fed.close()
                self._fed = None
            raise
        return out

    def _until_recv(self, op: Op, out: list[Update]) -> None:
        assert self._fed is not None
        while not isinstance(op, Recv):
            if isinstance(op, Update):
                out.append(op)
                op = self._fed.send(None)
            else:
                op = self._fed.send(self._do(op))

    def close(self) -> None:
        """Close the subscriber if the follower made it."""
        if self._fed is not None:
            self._fed.close()
            self._fed = None
        if self._own:
            self.subscriber.close()

    def __enter__(self) -> SessionFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSessionFollower:
    """:class:`SessionFollower` for asyncio: ``async for message in follower``."""

    def __init__(
        self,
        client: AsyncClient,
        events: AsyncSubscriber | str,
        project_id: str,
        session_id: str | None = None,
        *,
        after_seq: int | None = None,
        backlog: int | None = None,
        check_interval: float = 2.0,
        page_size: int = 500,
        rcvhwm: int | None = None,
    ) -> None:
        self.client = client
        self._own = isinstance(events, str)
        self.subscriber = (
            AsyncSubscriber(events, [""], rcvhwm=rcvhwm) if isinstance(events, str) else events
        )
        self._logic = _Logic(
            project_id,
            session_id,
            after_seq=after_seq,
            backlog=backlog,
            check_interval=check_interval,
            page_size=page_size,
            everything=self.subscriber.everything,
        )

    @property
    def session_id(self) -> str | None:
        """The session followed now (None while the project has none)."""
        return self._logic.session_id

    @property
    def status(self) -> str | None:
        """Its last known status."""
        return self._logic.status

    @property
    def error(self) -> str | None:
        """Its error, when the status is ``error``."""
        return self._logic.error

    @property
    def last_seq(self) -> int:
        """The seqId of the last message yielded."""
        return self._logic.last

    @property
    def resyncs(self) -> int:
        """How many times messages were loaded from storage (the snapshot included)."""
        return self._logic.resyncs

    async def _do(self, op: Call | Recv) -> Any:
        if isinstance(op, Recv):
            return await self.subscriber.recv(op.timeout)
        try:
            return await self.client.call(op.method, op.params)
        except RpcError as exc:
            return exc

    async def updates(self, until_turn_end: bool = False) -> AsyncIterator[Update]:
        """Every :class:`Update`, in order; endless unless ``until_turn_end``."""
        logic = self._logic.run(until_turn_end)
        value: Any = None
        while True:
            try:
                op = logic.send(value)
            except StopIteration:
                return
            if isinstance(op, Update):
                value = None
                yield op
            else:
                value = await self._do(op)

    async def messages(self, until_turn_end: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Only the messages (AgentMessage objects), in seqId order."""
        async for update in self.updates(until_turn_end):
            if update.message is not None:
                yield update.message

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self.messages()

    def close(self) -> None:
        """Close the subscriber if the follower made it."""
        if self._own:
            self.subscriber.close()

    async def __aenter__(self) -> AsyncSessionFollower:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
