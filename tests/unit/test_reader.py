"""The read functions of actors/reader.py on a real database filled through
actors/db.py, and the ReaderActor answering through an outbox (errors typed,
a failing handler answered internal_error while the actor keeps running)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pykka
import pytest

from corral.actors import db, reader
from corral.actors.reader import Query, ReaderActor, ReaderPool
from corral.protocol import methods
from corral.protocol.errors import NotFound
from tests.support.actor_fakes import RecordingOutbox, stored_row

BASE = 1_700_000_000_000


def message(seq: int, role: str = "assistant", **extra: Any) -> dict[str, Any]:
    return {
        "id": f"m{seq}",
        "seqId": seq,
        "role": role,
        "content": f"text {seq}",
        "timestamp": BASE + seq,
        **extra,
    }


def row(sid: str, project: str, status: str, created: int, last_seq: int = 0) -> dict[str, Any]:
    r = stored_row(sid, project, status=status, last_seq=last_seq)
    r.update(createdAt=BASE + created, updatedAt=BASE + created)
    return r


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """s1..s5 over projects p and q; s1 has seven messages, s4 one."""
    path = tmp_path / "corral.db"
    conn = db.connect(path)
    with conn:
        for r in (
            row("s1", "p", "done", 10, last_seq=7),
            row("s2", "q", "running", 20),
            row("s3", "p", "error", 30),
            row("s4", "p", "done", 40, last_seq=1),
            row("s5", "p", "done", 40),  # same createdAt as s4, stored after it
        ):
            db.upsert_session(conn, r, {"cwd": "/"})
        db.insert_messages(
            conn,
            "s1",
            [
                message(1, "user"),
                message(2, "tool-call", toolName="Bash", toolInput='{"command":"ls"}'),
                *(message(seq) for seq in range(3, 8)),
            ],
        )
        db.insert_messages(conn, "s4", [message(1, "user")])
    conn.close()
    return path


@pytest.fixture
def conn(path: Path) -> Iterator[apsw.Connection]:
    c = db.connect(path, readonly=True)
    try:
        yield c
    finally:
        c.close()


def read(fn: reader.ReadFunction, conn: apsw.Connection, method: str, **params: Any) -> Any:
    """Call a read function with params as the router hands them (defaults filled)."""
    return fn(conn, methods.validate_params(method, params))


# ---------------------------------------------------------------- messages_after


def test_messages_page_forward_with_has_more(conn: apsw.Connection) -> None:
    pages = []
    after = 0
    while True:
        page = read(
            reader.messages_after,
            conn,
            "session.messages.load",
            sessionId="s1",
            afterSeq=after,
            limit=3,
        )
        pages.append(([m["seqId"] for m in page["messages"]], page["hasMore"]))
        assert page["lastSeqId"] == 7
        if not page["hasMore"]:
            break
        after = page["messages"][-1]["seqId"]
    assert pages == [([1, 2, 3], True), ([4, 5, 6], True), ([7], False)]


def test_a_page_that_ends_exactly_at_the_last_message_has_no_more(conn: apsw.Connection) -> None:
    page = read(reader.messages_after, conn, "session.messages.load", sessionId="s1", limit=7)
    assert len(page["messages"]) == 7 and page["hasMore"] is False
    past = read(reader.messages_after, conn, "session.messages.load", sessionId="s1", afterSeq=7)
    assert past == {"messages": [], "lastSeqId": 7, "hasMore": False}


def test_messages_keep_their_optional_keys_and_stay_in_their_session(conn: apsw.Connection) -> None:
    page = read(reader.messages_after, conn, "session.messages.load", sessionId="s1", limit=2)
    first, second = page["messages"]
    assert first == message(1, "user")
    assert second["toolName"] == "Bash" and second["toolInput"] == '{"command":"ls"}'
    other = read(reader.messages_after, conn, "session.messages.load", sessionId="s4")
    assert other["messages"] == [message(1, "user")] and other["lastSeqId"] == 1


def test_messages_of_an_unknown_session_are_not_found(conn: apsw.Connection) -> None:
    with pytest.raises(NotFound) as caught:
        read(reader.messages_after, conn, "session.messages.load", sessionId="nope")
    assert caught.value.reason == "not_found"
    # a known session without messages is not an error
    empty = read(reader.messages_after, conn, "session.messages.load", sessionId="s2")
    assert empty == {"messages": [], "lastSeqId": 0, "hasMore": False}


# ---------------------------------------------------------------- sessions


def ids(result: dict[str, Any]) -> list[str]:
    return [s["sessionId"] for s in result["sessions"]]


def test_list_sessions_newest_first(conn: apsw.Connection) -> None:
    # s4 and s5 share a createdAt: the one stored last comes first
    assert ids(read(reader.list_sessions, conn, "session.list")) == ["s5", "s4", "s3", "s2", "s1"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"projectId": "p"}, ["s5", "s4", "s3", "s1"]),
        ({"projectId": "q"}, ["s2"]),
        ({"projectId": "none"}, []),
        ({"status": "done"}, ["s5", "s4", "s1"]),
        ({"projectId": "p", "status": "error"}, ["s3"]),
        ({"limit": 2}, ["s5", "s4"]),
        ({"before": BASE + 40}, ["s3", "s2", "s1"]),
        ({"before": BASE + 30, "projectId": "p"}, ["s1"]),
    ],
)
def test_list_sessions_filters(
    conn: apsw.Connection, params: dict[str, Any], expected: list[str]
) -> None:
    assert ids(read(reader.list_sessions, conn, "session.list", **params)) == expected


def test_list_sessions_pages_with_before(conn: apsw.Connection) -> None:
    first = read(reader.list_sessions, conn, "session.list", limit=3)
    oldest = first["sessions"][-1]["createdAt"]
    rest = read(reader.list_sessions, conn, "session.list", limit=3, before=oldest)
    assert ids(first) + ids(rest) == ["s5", "s4", "s3", "s2", "s1"]


def test_newest_session_of_a_project(conn: apsw.Connection) -> None:
    newest = read(reader.newest_session, conn, "session.load", projectId="p")["session"]
    assert newest["sessionId"] == "s5" and newest["projectId"] == "p"
    only = read(reader.newest_session, conn, "session.load", projectId="q")["session"]
    assert (only["sessionId"], only["status"]) == ("s2", "running")
    assert read(reader.newest_session, conn, "session.load", projectId="zz") == {"session": None}


def test_session_by_id(conn: apsw.Connection) -> None:
    session = reader.session_by_id(conn, {"sessionId": "s1"})["session"]
    assert (session["sessionId"], session["status"], session["lastSeqId"]) == ("s1", "done", 7)
    assert session["createdAt"] == BASE + 10 and session["messageCount"] == 7
    assert reader.session_by_id(conn, {"sessionId": "nope"}) == {"session": None}


# ---------------------------------------------------------------- ReaderActor


@pytest.fixture
def actor(path: Path) -> Iterator[tuple[pykka.ActorRef[Any], RecordingOutbox]]:
    outbox = RecordingOutbox()
    ref = ReaderActor.start(path, outbox)
    try:
        yield ref, outbox
    finally:
        ref.stop(block=True, timeout=5)


def test_the_reader_answers_through_the_outbox(
    actor: tuple[pykka.ActorRef[Any], RecordingOutbox], path: Path
) -> None:
    ref, outbox = actor
    ref.tell(Query(reader.list_sessions, {"projectId": "q"}, "t1", "session.list"))
    assert ids(outbox.wait_reply("t1").result) == ["s2"]
    # a commit made after the reader opened its connection is seen by the next query
    conn = db.connect(path)
    with conn:
        db.upsert_session(conn, row("s6", "q", "done", 50), {})
    conn.close()
    ref.tell(Query(reader.list_sessions, {"projectId": "q"}, "t2", "session.list"))
    assert ids(outbox.wait_reply("t2").result) == ["s6", "s2"]
    ref.tell(Query(reader.messages_after, {"sessionId": "x"}, "t3", "session.messages.load"))
    reply = outbox.wait_reply("t3")
    assert reply.result is None and reply.error is not None and reply.error.reason == "not_found"


def test_a_failing_handler_answers_internal_error_and_the_reader_lives_on(
    actor: tuple[pykka.ActorRef[Any], RecordingOutbox],
) -> None:
    ref, outbox = actor

    def broken(_conn: apsw.Connection, _params: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("query bug")

    def writes(conn: apsw.Connection, _params: dict[str, Any]) -> dict[str, Any]:
        conn.execute("DELETE FROM sessions")
        return {}

    ref.tell(Query(broken, {}, "bad", "test.broken"))
    ref.tell("not a query")  # logged and ignored
    ref.tell(Query(writes, {}, "write", "test.write"))
    ref.tell(Query(reader.session_by_id, {"sessionId": "s3"}, "good", "session.get"))
    bad = outbox.wait_reply("bad")
    assert bad.error is not None and bad.error.reason == "internal_error"
    assert "test.broken" in bad.error.message and "query bug" in bad.error.message
    write = outbox.wait_reply("write")  # the reader's connection is read-only
    assert write.error is not None and write.error.reason == "internal_error"
    assert outbox.wait_reply("good").result["session"]["status"] == "error"
    assert ref.is_alive()


class Recorder:
    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def test_the_pool_hands_queries_round_robin() -> None:
    refs = [Recorder(), Recorder()]
    pool = ReaderPool(refs)  # type: ignore[arg-type]
    queries = [Query(reader.list_sessions, {}, f"t{i}", "session.list") for i in range(5)]
    for q in queries:
        pool.tell(q)
    assert refs[0].told == queries[0::2] and refs[1].told == queries[1::2]
