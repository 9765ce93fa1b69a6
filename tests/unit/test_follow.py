"""The session follower's rules, driven by a scripted daemon (no sockets).

A script is a list of steps: ``commit`` changes the fake store (what
``session.get``/``session.messages.load`` answer), ``event`` is the next frame
the subscriber gets. Events are published after their commit, as the daemon does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import pytest

from corral.protocol.errors import NotFound, RpcError
from corral.protocol.follow import AsyncSessionFollower, SessionFollower, Update

SID, SID2 = "s-1", "s-2"


def msg(seq: int, role: str = "assistant") -> dict[str, Any]:
    return {"id": f"m{seq}", "seqId": seq, "role": role, "content": f"text {seq}", "timestamp": seq}


class FakeDaemon:
    """A store of sessions and messages, and a script of events."""

    def __init__(self, project: str = "p") -> None:
        self.project = project
        self.sessions: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.current: str | None = None
        self.script: deque[tuple[str, Any]] = deque()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.eseq = 0
        self.boot = "b1"

    # -- store -------------------------------------------------------------------

    def add_session(self, sid: str, status: str = "running", n: int = 0) -> None:
        self.sessions[sid] = {"sessionId": sid, "projectId": self.project, "status": status}
        self.messages[sid] = []
        self.current = sid
        self.append(sid, *(msg(i) for i in range(1, n + 1)))

    def append(self, sid: str, *messages: dict[str, Any]) -> None:
        self.messages[sid].extend(messages)
        self.sessions[sid]["lastSeqId"] = len(self.messages[sid])

    # -- script ------------------------------------------------------------------

    def commit(self, sid: str, *seqs: int, status: str | None = None) -> list[dict[str, Any]]:
        messages = [msg(s) for s in seqs]
        self.script.append(("commit", (sid, messages, status)))
        return messages

    def event(self, name: str, data: dict[str, Any], project: str | None = "p", **kw: Any) -> None:
        self.eseq += kw.get("skip", 0) + 1
        frame = {"event": name, "boot": kw.get("boot", self.boot), "eseq": self.eseq, "data": data}
        if project:
            frame["projectId"] = project
        self.script.append(("event", frame))

    def publish(self, sid: str, *seqs: int, drop: bool = False) -> None:
        """Commit messages, and publish them (or lose the event: ``drop``)."""
        messages = self.commit(sid, *seqs)
        if drop:
            self.eseq += 1
        else:
            self.event("agent.message", {"sessionId": sid, "messages": messages})

    def status(self, sid: str, status: str, drop: bool = False) -> None:
        self.script.append(("commit", (sid, [], status)))
        if drop:
            self.eseq += 1
        else:
            self.event("agent.status", {"sessionId": sid, "status": status})

    # -- the follower's I/O -----------------------------------------------------

    def recv(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        while self.script:
            kind, item = self.script.popleft()
            if kind == "commit":
                sid, messages, status = item
                if sid not in self.sessions:
                    self.add_session(sid)
                self.append(sid, *messages)
                if status:
                    self.sessions[sid]["status"] = status
                continue
            return "project/p/x", item
        return None

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = params or {}
        self.calls.append((method, params))
        if method == "session.get":
            return {"session": dict(self.sessions[self.current]) if self.current else None}
        if method == "session.load":
            return {"session": dict(self.sessions[self.current]) if self.current else None}
        if method == "session.list":
            return {"sessions": [dict(s) for s in self.sessions.values()]}
        if method == "session.messages.load":
            if params["sessionId"] not in self.messages:
                raise NotFound("unknown sessionId")
            stored = self.messages[params["sessionId"]]
            after, limit = params["afterSeq"], params["limit"]
            page = [m for m in stored if m["seqId"] > after][:limit]
            more = bool(page) and page[-1]["seqId"] < len(stored)
            return {"messages": page, "lastSeqId": len(stored), "hasMore": more}
        raise AssertionError(method)

    def loads(self) -> int:
        return sum(1 for m, _ in self.calls if m == "session.messages.load")


class FakeSub:
    everything = True

    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon

    def recv(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        return self.daemon.recv(timeout)


class FakeClient:
    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.daemon.call(method, params)


def follower(d: FakeDaemon, sid: str | None = SID, **kw: Any) -> SessionFollower:
    kw.setdefault("check_interval", 60.0)
    return SessionFollower(FakeClient(d), FakeSub(d), "p", sid, **kw)  # type: ignore[arg-type]


def seqs(updates: list[Update]) -> list[int]:
    return [u.message["seqId"] for u in updates if u.message is not None]


def run(f: SessionFollower) -> list[Update]:
    return list(f.updates(until_turn_end=True))


def test_snapshot_then_events_without_duplicates() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=3)
    d.event("agent.message", {"sessionId": SID, "messages": [msg(2), msg(3)]})  # already loaded
    d.publish(SID, 4, 5)
    d.publish(SID, 6)
    d.status(SID, "done")
    updates = run(follower(d))
    assert seqs(updates) == [1, 2, 3, 4, 5, 6]
    assert updates[0].kind == "session"
    assert updates[-1] == Update("status", SID, status="done")
    assert d.loads() == 1  # the snapshot only: the check after done found nothing new


def test_a_seq_id_gap_resyncs_from_storage() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=2)
    d.publish(SID, 3)
    d.publish(SID, 4, drop=True)  # lost, and eseq skips
    d.publish(SID, 5)
    d.status(SID, "done")
    f = follower(d)
    assert seqs(run(f)) == [1, 2, 3, 4, 5]
    assert f.resyncs >= 2


def test_an_eseq_jump_alone_resyncs() -> None:
    """The lost event was the last message: only the eseq jump of the next event shows it."""
    d = FakeDaemon()
    d.add_session(SID, n=1)
    d.publish(SID, 2, drop=True)
    d.event("health", {"projectId": "p"})  # eseq jumped
    d.status(SID, "done")
    assert seqs(run(follower(d))) == [1, 2]


def test_a_heartbeat_ahead_resyncs() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1)
    d.commit(SID, 2, 3)  # committed, but the event never comes
    d.event("daemon.heartbeat", {"live": 1, "lastSeqIds": {SID: 3}}, project=None)
    got: list[Update] = []
    for update in follower(d).updates():
        got.append(update)
        if seqs(got) == [1, 2, 3]:
            break
    assert seqs(got) == [1, 2, 3]


def test_a_lost_status_event_is_found_by_the_periodic_check() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1)
    d.publish(SID, 2)
    d.commit(SID, 3, status="done")  # message and status: both events lost
    updates = run(follower(d, check_interval=0.01))
    assert seqs(updates) == [1, 2, 3]
    assert updates[-1].status == "done"


def test_a_new_boot_resyncs_and_checks() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=2)
    d.publish(SID, 3)
    d.commit(SID, 4, status="error")
    d.sessions[SID]["error"] = "interrupted: daemon restarted"
    d.eseq = 0
    d.event("daemon.started", {}, project=None, boot="b2")
    updates = run(follower(d))
    assert seqs(updates) == [1, 2, 3, 4]
    assert updates[-1].status == "error"
    assert updates[-1].error == "interrupted: daemon restarted"


def test_statuses_and_messages_keep_their_order() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1, status="done")
    d.sessions[SID]["status"] = "running"
    d.publish(SID, 2)
    d.commit(SID, 3, status="done")  # done comes with messages not yet published
    d.event("agent.status", {"sessionId": SID, "status": "done"})
    updates = run(follower(d))
    kinds = [(u.kind, u.message["seqId"] if u.message else u.status) for u in updates[1:]]
    assert kinds == [
        ("message", 1),
        ("status", "running"),
        ("message", 2),
        ("message", 3),
        ("status", "done"),
    ]


def test_after_seq_and_backlog() -> None:
    d = FakeDaemon()
    d.add_session(SID, status="done", n=30)
    assert seqs(run(follower(d, after_seq=25))) == [26, 27, 28, 29, 30]
    d2 = FakeDaemon()
    d2.add_session(SID, status="done", n=30)
    assert seqs(run(follower(d2, None, backlog=3))) == [28, 29, 30]


def test_pages_through_a_long_transcript() -> None:
    d = FakeDaemon()
    d.add_session(SID, status="done", n=1234)
    assert seqs(run(follower(d, page_size=100))) == list(range(1, 1235))
    assert d.loads() >= 13


def test_project_follower_moves_to_the_next_session() -> None:
    d = FakeDaemon()
    d.add_session(SID, status="done", n=2)
    d.commit(SID2, 1)
    d.event("agent.message", {"sessionId": SID2, "messages": [msg(1)]})
    d.event("agent.status", {"sessionId": SID2, "status": "running"})
    d.publish(SID2, 2)
    d.status(SID2, "done")
    d.script.appendleft(("commit", (SID, [], None)))
    updates = follower(d, None).updates()
    got: list[Update] = []
    for u in updates:
        got.append(u)
        if u.session_id == SID2 and u.status == "done":
            break
    assert [(u.kind, u.session_id) for u in got if u.kind == "session"] == [
        ("session", SID),
        ("session", SID2),
    ]
    assert [(u.session_id, u.message["seqId"]) for u in got if u.message] == [
        (SID, 1),
        (SID, 2),
        (SID2, 1),
        (SID2, 2),
    ]


def test_pinned_follower_ignores_other_sessions_and_ends_when_purged() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1)
    d.commit(SID2, 1)
    d.event("agent.message", {"sessionId": SID2, "messages": [msg(1)]})
    d.event("agent.message", {"sessionId": SID, "messages": [msg(2)]})
    f = follower(d, check_interval=0.01)
    got: list[Update] = []
    for update in f.updates(until_turn_end=True):
        got.append(update)
        if seqs(got) == [1, 2]:
            del d.sessions[SID]
            d.current = None
    assert seqs(got) == [1, 2]  # SID2's message was not taken; then SID was gone: the end
    assert {u.session_id for u in got} == {SID}


def test_feed_drives_it_from_outside() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=2)
    f = follower(d)
    first = f.feed(None)
    assert seqs(first) == [1, 2]
    d.append(SID, msg(3))
    frame = {"event": "agent.message", "boot": "b1", "eseq": 1, "projectId": "p"}
    frame["data"] = {"sessionId": SID, "messages": [msg(3)]}
    assert seqs(f.feed(("project/p/agent.message", frame))) == [3]
    assert f.feed(None) == []
    f.close()


def test_update_to_json() -> None:
    assert Update("message", SID, message=msg(1)).to_json() == {
        "kind": "message",
        "sessionId": SID,
        "message": msg(1),
    }
    assert Update("status", SID, status="error", error="x").to_json() == {
        "kind": "status",
        "sessionId": SID,
        "status": "error",
        "error": "x",
    }


class AsyncFake:
    everything = True

    def __init__(self, daemon: FakeDaemon) -> None:
        self.daemon = daemon

    async def recv(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        return self.daemon.recv(timeout)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.daemon.call(method, params)


def test_async_follower_same_rules() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=2)
    d.publish(SID, 3)
    d.publish(SID, 4, drop=True)
    d.publish(SID, 5)
    d.status(SID, "done")
    fake = AsyncFake(d)

    async def main() -> tuple[list[int], str | None]:
        f = AsyncSessionFollower(fake, fake, "p", SID, check_interval=60)  # type: ignore[arg-type]
        got = [m["seqId"] async for m in f.messages(until_turn_end=True)]
        return got, f.status

    assert asyncio.run(main()) == ([1, 2, 3, 4, 5], "done")


def test_rpc_errors_are_handled_as_answers() -> None:
    """A NotFound on messages.load (session purged meanwhile) ends a pinned follow."""
    d = FakeDaemon()
    d.add_session(SID, n=1)

    class Gone(FakeClient):
        def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
            if method == "session.messages.load":
                raise NotFound("unknown sessionId")
            return super().call(method, params)

    f = SessionFollower(Gone(d), FakeSub(d), "p", SID, check_interval=60)  # type: ignore[arg-type]
    assert [u.kind for u in f.updates(until_turn_end=True)] == ["session", "status"]
    assert isinstance(NotFound("x"), RpcError)


@pytest.mark.parametrize("drop_every", [2, 3, 5])
def test_random_losses_end_with_the_stored_sequence(drop_every: int) -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1)
    for seq in range(2, 60):
        d.publish(SID, seq, drop=seq % drop_every == 0)
    d.status(SID, "done", drop=drop_every == 2)
    assert seqs(run(follower(d, check_interval=0.01))) == list(range(1, 60))


def test_a_message_cut_in_its_event_is_loaded_whole() -> None:
    d = FakeDaemon()
    d.add_session(SID, n=1)
    whole = d.commit(SID, 2)[0]
    whole["content"] = "x" * 40_000
    cut = dict(whole, content="x" * 16_384, truncated=True, contentBytes=40_000)
    d.event("agent.message", {"sessionId": SID, "messages": [cut]})
    d.publish(SID, 3)
    d.status(SID, "done")
    f = follower(d)
    messages = [u.message for u in run(f) if u.message is not None]
    assert [m["seqId"] for m in messages] == [1, 2, 3]
    assert messages[1]["content"] == "x" * 40_000 and "truncated" not in messages[1]
    assert f.resyncs == 2  # the snapshot, then the cut message
