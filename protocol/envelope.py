"""JSON-RPC 2.0 envelope: decode one request frame's payload, build responses.

:func:`decode` never raises: every malformed part becomes a :class:`Rejected`
entry that the router answers with its error (``id`` null when the request's id
could not be read), without executing anything. Well-formed entries are
:class:`Call` values whose ``params`` are still raw (an object, an array or
absent/null: anything else is an Invalid Request); the router checks them with
:func:`protocol.methods.validate_params`.

Ids come back exactly as sent. orjson reads integers only within 64 bits (a
larger one becomes a float) and floats as doubles, so a numeric id that a
double would not write back verbatim is re-read as its literal text and kept as
an :class:`orjson.Fragment` that :func:`dumps` writes unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from corral.protocol.errors import InvalidRequest, ParseError, RpcError, TooLarge

__all__ = [
    "MAX_BATCH",
    "MAX_REQUEST_BYTES",
    "Call",
    "Decoded",
    "Rejected",
    "decode",
    "dumps",
    "error_response",
    "loads",
    "result_response",
]

MAX_REQUEST_BYTES = 1 << 20
"""Largest request frame payload (a batch counts as one frame)."""
MAX_BATCH = 64
"""Most entries in one batch."""

_REQUEST_MEMBERS = frozenset({"jsonrpc", "id", "method", "params"})


@dataclass
class Call:
    """A well-formed request; ``notification`` when it had no ``id`` (no answer)."""

    id: object
    method: str
    params: object
    notification: bool = False


@dataclass
class Rejected:
    """An entry answered with ``error`` without being executed (always answered)."""

    id: object
    error: RpcError


@dataclass
class Decoded:
    """One decoded frame: a single request (``batch`` false) or a batch's entries."""

    batch: bool
    entries: list[Call | Rejected] = field(default_factory=list)


def _valid_id(value: object) -> bool:
    return (
        value is None
        or isinstance(value, str | float | orjson.Fragment)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


class _Literal(str):
    """A JSON number as its text (the stdlib parser's number hook)."""


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _id_needs_literal(entry: object) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("id"), float)


def _exact_ids(payload: bytes | bytearray | memoryview, doc: object) -> None:
    """Replace float ids that would not be written back verbatim by their literal text.

    Runs only when some entry's id was read as a float (rare): the payload is
    parsed again by the stdlib parser with numbers kept as text.
    """
    try:
        literal_doc = json.loads(
            bytes(payload),
            parse_int=_Literal,
            parse_float=_Literal,
            parse_constant=_refuse_constant,
        )
    except (ValueError, RecursionError, TypeError):
        return
    pairs: list[tuple[object, object]]
    if isinstance(doc, list) and isinstance(literal_doc, list) and len(doc) == len(literal_doc):
        pairs = list(zip(doc, literal_doc, strict=True))
    else:
        pairs = [(doc, literal_doc)]
    for entry, literal_entry in pairs:
        if not (_id_needs_literal(entry) and isinstance(literal_entry, dict)):
            continue
        text = literal_entry.get("id")
        if not isinstance(text, _Literal):
            continue
        assert isinstance(entry, dict)
        if orjson.dumps(entry["id"]) != text.encode():
            entry["id"] = orjson.Fragment(text.encode())


def _decode_request(obj: object) -> Call | Rejected:
    if not isinstance(obj, dict):
        return Rejected(None, InvalidRequest("a request must be a JSON object"))
    has_id = "id" in obj
    rid = obj.get("id")
    if has_id and not _valid_id(rid):
        return Rejected(None, InvalidRequest("id must be a string, a number or null"))
    if obj.get("jsonrpc") != "2.0":
        return Rejected(rid, InvalidRequest('jsonrpc must be "2.0"'))
    method = obj.get("method")
    if not isinstance(method, str):
        msg = "method is missing" if "method" not in obj else "method must be a string"
        return Rejected(rid, InvalidRequest(msg))
    if len(obj) > 2 + has_id + ("params" in obj):
        extra = sorted(str(k) for k in obj if k not in _REQUEST_MEMBERS)
        shown = ", ".join(repr(k[:64]) for k in extra[:5])
        return Rejected(rid, InvalidRequest(f"unknown request members: {shown}"))
    params = obj.get("params")
    if params is not None and not isinstance(params, dict | list):
        return Rejected(rid, InvalidRequest("params must be an object or an array"))
    return Call(rid, method, params, not has_id)


def decode(payload: bytes | bytearray | memoryview) -> Decoded:
    """Decode one request frame's payload (see the module doc); never raises."""
    if len(payload) > MAX_REQUEST_BYTES:
        return Decoded(
            False,
            [Rejected(None, TooLarge(f"request larger than {MAX_REQUEST_BYTES} bytes"))],
        )
    try:
        doc = orjson.loads(payload)
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        return Decoded(False, [Rejected(None, ParseError(f"parse error: {exc}"))])
    if isinstance(doc, list):
        if not doc:
            return Decoded(False, [Rejected(None, InvalidRequest("empty batch"))])
        if len(doc) > MAX_BATCH:
            err = InvalidRequest(f"batch of {len(doc)} entries; at most {MAX_BATCH} allowed")
            return Decoded(False, [Rejected(None, err)])
        if any(_id_needs_literal(item) for item in doc):
            _exact_ids(payload, doc)
        return Decoded(True, [_decode_request(item) for item in doc])
    if _id_needs_literal(doc):
        _exact_ids(payload, doc)
    return Decoded(False, [_decode_request(doc)])


def result_response(id: object, result: Any) -> dict[str, Any]:
    """A success response."""
    return {"jsonrpc": "2.0", "id": id, "result": result}


def error_response(id: object, err: RpcError) -> dict[str, Any]:
    """An error response."""
    return {"jsonrpc": "2.0", "id": id, "error": err.to_json()}


def dumps(obj: Any) -> bytes:
    """Serialize to compact UTF-8 JSON."""
    return orjson.dumps(obj)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse JSON (raises ``orjson.JSONDecodeError``, a ``ValueError``)."""
    return orjson.loads(data)
