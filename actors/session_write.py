"""One session step as one store write: what is saved, what is published after.

A session step (a prompt, a read of provider output, an exit) becomes exactly
one :class:`~corral.actors.store.Write`: the session row, its new messages and
raw lines, and the events that announce them (``agent.message``,
``agent.cost``, ``agent.status``), which the store publishes only after its
commit.
"""

from __future__ import annotations

from typing import Any

import orjson

from corral.actors.normalized import Normalized
from corral.actors.record import SessionRecord
from corral.actors.store import AddMessages, AddRaw, Publication, SaveSession

RAW_MAX_CHARS = 65536
"""A provider line the parser did not understand is stored raw, cut to this size."""


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
        publish.append(Publication("agent.message", {"sessionId": sid, "messages": messages}, pid))
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
