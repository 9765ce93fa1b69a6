"""Events are bounded in bytes, the store is not: long texts are cut in events
(marked), a step's messages are split over events, pages of
``session.messages.load`` stop at a byte bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.actors import db
from corral.actors.record import SessionRecord
from corral.actors.session_write import event_chunks, for_event, step_ops
from corral.actors.store import AddMessages

KIB = 1024


def message(seq: int, content: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"m{seq}",
        "seqId": seq,
        "role": "assistant",
        "content": content,
        "timestamp": 1,
        **extra,
    }


def test_a_short_message_goes_out_as_it_is() -> None:
    m = message(1, "x" * (16 * KIB))
    assert for_event(m) is m


def test_a_long_text_is_cut_at_16_kib_and_marked() -> None:
    m = message(1, "é" * 10_000, toolInput="y" * 20_000)  # 20,000 bytes of content
    out = for_event(m)
    assert out["truncated"] is True
    assert len(out["content"].encode()) == 16 * KIB and out["contentBytes"] == 20_000
    assert out["content"] == "é" * (8 * KIB)  # cut on a character boundary
    assert out["toolInput"] == "y" * (16 * KIB) and out["toolInputBytes"] == 20_000
    assert m["content"] == "é" * 10_000 and "truncated" not in m  # the stored one is whole


def test_a_cut_on_a_multibyte_character_keeps_whole_characters() -> None:
    out = for_event(message(1, "a" + "€" * 6000))  # 18,001 bytes
    assert out["content"] == "a" + "€" * 5461  # 16,384 bytes would split a euro sign
    assert out["contentBytes"] == 18_001


def test_a_step_is_split_over_events_of_about_64_kib() -> None:
    messages = [message(n, "z" * (10 * KIB)) for n in range(1, 21)]  # 200 KiB
    chunks = event_chunks(messages)
    assert [m["seqId"] for chunk in chunks for m in chunk] == list(range(1, 21))
    assert len(chunks) >= 4
    for chunk in chunks:
        assert sum(len(m["content"]) for m in chunk) <= 64 * KIB
    huge = event_chunks([message(1, "h" * (1024 * KIB))])
    assert len(huge) == 1 and len(huge[0][0]["content"]) == 16 * KIB


def test_step_ops_store_whole_messages_and_publish_cut_ones() -> None:
    record = SessionRecord.new("s", "p", "mock", None)
    messages = [message(1, "w" * 100_000), message(2, "small")]
    ops, publish = step_ops(record, {}, messages, [], status_changed=False, cost_changed=False)
    [stored] = [op for op in ops if isinstance(op, AddMessages)]
    assert stored.messages[0]["content"] == "w" * 100_000
    published = [m for p in publish if p.event == "agent.message" for m in p.data["messages"]]
    assert [m["seqId"] for m in published] == [1, 2]
    assert published[0]["truncated"] is True and published[1] == messages[1]


def test_a_page_stops_at_512_kib_but_always_holds_one_message(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "corral.db")
    row = SessionRecord.new("s", "p", "mock", None).to_wire()
    with conn:
        db.upsert_session(conn, row, {})
        db.insert_messages(conn, "s", [message(n, "b" * (200 * KIB)) for n in range(1, 6)])
        db.insert_messages(conn, "s", [message(6, "c" * (2048 * KIB))])
    page, more = db.load_messages(conn, "s", 0, 5000)
    assert [m["seqId"] for m in page] == [1, 2, 3] and more  # 600 KiB: stops past 512
    page, more = db.load_messages(conn, "s", 3, 5000)
    assert [m["seqId"] for m in page] == [4, 5, 6] and not more  # 400 KiB, then one more
    page, more = db.load_messages(conn, "s", 5, 5000)
    assert [m["seqId"] for m in page] == [6] and not more  # one message even when larger
    page, more = db.load_messages(conn, "s", 0, 2)
    assert [m["seqId"] for m in page] == [1, 2] and more
    conn.close()
