"""Tests for supervisor/outbox.py: replies never wait behind queued publications."""

from __future__ import annotations

from corral.supervisor.outbox import PublishItem, ReplyItem, Route, RouterOutbox


def route(n: int) -> Route:
    return Route(ident=b"peer", empty_frame=False, request_id=n)


def test_replies_are_drained_before_publications_queued_earlier() -> None:
    outbox = RouterOutbox()
    try:
        for i in range(5):
            outbox.publish("agent.message", {"i": i}, "p")
        outbox.reply(route(1), result={"ok": True})
        items = outbox.drain(limit=3)
        assert isinstance(items[0], ReplyItem) and items[0].route.request_id == 1
        assert [i.data["i"] for i in items[1:] if isinstance(i, PublishItem)] == [0, 1]
        # the publications keep their own order across drains
        rest = outbox.drain()
        assert [i.data["i"] for i in rest if isinstance(i, PublishItem)] == [2, 3, 4]
    finally:
        outbox.close()


def test_drain_replies_takes_only_replies_in_their_order() -> None:
    outbox = RouterOutbox()
    try:
        outbox.publish("agent.status", {"s": 1}, "p")
        for n in (7, 8, 9):
            outbox.reply(route(n), result=n)
        replies = outbox.drain_replies()
        assert [r.route.request_id for r in replies] == [7, 8, 9]
        assert outbox.drain_replies() == []
        left = outbox.drain()
        assert len(left) == 1 and isinstance(left[0], PublishItem)
    finally:
        outbox.close()
