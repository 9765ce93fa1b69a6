"""One session step as one store write: what is saved, what is published after.

A session step (a prompt, a read of provider output, an exit) becomes exactly
one :class:`~corral.actors.store.Write`: the session row, its new messages and
raw lines, and the events that announce them (``agent.message``,
``agent.cost``, ``agent.status``), which the store publishes only after its
commit.

Events are bounded in bytes, the store is not: a message whose ``content`` or
``toolInput`` is over :data:`EVENT_FIELD_MAX_BYTES` goes out cut, marked
``"truncated": true`` with the full sizes (``contentBytes``, ``toolInputBytes``),
and a client loads it whole with ``session.messages.load``. A step's messages
are split over as many ``agent.message`` events as keep each under about
:data:`EVENT_MAX_BYTES`, so what the daemon holds for a subscriber that does
not read is at most the PUB high-water mark times that.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.actors.normalized import Normalized
from corral.actors.record import SessionRecord
from corral.actors.store import AddMessages, AddRaw, Publication, SaveSession

RAW_MAX_CHARS = 65536
"""A provider line the parser did not understand is stored raw, cut to this size."""

EVENT_FIELD_MAX_BYTES = 16 * 1024
"""A message's ``content`` or ``toolInput`` longer than this (UTF-8) is cut in events."""

EVENT_MAX_BYTES = 64 * 1024
"""An ``agent.message`` event carries messages up to about this many bytes (at least one)."""

_CUT_FIELDS = (("content", "contentBytes"), ("toolInput", "toolInputBytes"))
_OVERHEAD = 256  # the JSON around a message's text fields, roughly


def step_ops(
    record: SessionRecord,
    options: dict[str, Any],
    messages: list[dict[str, Any]],
    raws: list[AddRaw],
    *,
    status_changed: bool,
    cost_changed: bool,
) -> tuple[list[Any], list[Publication]]:
    """(store operations, publications) of one step of ``record``."""
    ops: list[Any] = [SaveSession(record.to_wire(), options)]
    publish: list[Publication] = []
    sid, pid = record.session_id, record.project_id
    if messages:
        ops.append(AddMessages(sid, messages))
        for chunk in event_chunks(messages):
            publish.append(Publication("agent.message", {"sessionId": sid, "messages": chunk}, pid))
    ops.extend(raws)
    if cost_changed:
        publish.append(Publication("agent.cost", record.cost_event(), pid))
    if status_changed:
        data: dict[str, Any] = {"sessionId": sid, "status": record.status}
        if record.error:
            data["error"] = record.error
        publish.append(Publication("agent.status", data, pid))
    return ops, publish


def dump_raw(raw: dict[str, Any]) -> str:
    """A raw provider line as stored (JSON where possible), at most RAW_MAX_CHARS."""
    try:
        return orjson.dumps(raw, default=str).decode()[:RAW_MAX_CHARS]
    except TypeError:
        return repr(raw)[:RAW_MAX_CHARS]


def delta_event(session_id: str, last_seq: int, n: Normalized) -> dict[str, Any]:
    """The ``agent.delta`` data of a ``delta`` value (a preview, never stored)."""
    offset = (n.raw or {}).get("offset", 0)
    return {
        "sessionId": session_id,
        "role": "thinking" if n.status == "thinking" else "assistant",
        "text": n.text,
        "offset": offset if isinstance(offset, int) and offset >= 0 else 0,
        "afterSeq": last_seq,
    }


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def for_event(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` as an event carries it: itself, or a copy with its long text
    fields cut to EVENT_FIELD_MAX_BYTES and marked ``truncated``."""
    cut: dict[str, Any] | None = None
    for name, size_name in _CUT_FIELDS:
        text = message.get(name)
        if not isinstance(text, str) or len(text) <= EVENT_FIELD_MAX_BYTES // 4:
            continue
        size = _utf8_len(text)
        if size <= EVENT_FIELD_MAX_BYTES:
            continue
        if cut is None:
            cut = dict(message)
            cut["truncated"] = True
        head = text.encode()[:EVENT_FIELD_MAX_BYTES].decode(errors="ignore")
        cut[name] = head
        cut[size_name] = size
    return message if cut is None else cut


def _event_size(message: dict[str, Any]) -> int:
    size = _OVERHEAD
    for name, _size_name in _CUT_FIELDS:
        text = message.get(name)
        if isinstance(text, str):
            size += len(text)  # characters: close enough to bound memory
    return size


def event_chunks(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The messages of one step as the ``messages`` of consecutive events, each
    about EVENT_MAX_BYTES at most (a chunk always holds at least one)."""
    chunks: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for message in messages:
        item = for_event(message)
        item_size = _event_size(item)
        if current and size + item_size > EVENT_MAX_BYTES:
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks
