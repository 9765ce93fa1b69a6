"""Hypothesis strategies for fuzzing the RPC socket (see :mod:`tests.support.fuzz_rpc`).

Built from the daemon's own ``rpc.describe``: every method it lists is fuzzed
with params drawn from its params schema. Requests to methods that change
state are only ever generated *invalid by construction* (an unknown member, a
missing required member, a value of the wrong type, out of range or not
matching its pattern, params that are an array), or valid but aimed at
projects and sessions that do not exist (:data:`GHOST_SAFE`); such a request
carries an :class:`~tests.support.fuzz_rpc.IdSlot` with ``must_fail`` when it
is invalid. Read-only methods (:data:`READ_ONLY`) get anything, valid or not.
Arbitrary JSON documents never name a method that is not read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from tests.support.fuzz_rpc import MIB, Frames, IdSlot, Message, Payload

READ_ONLY = frozenset(
    {
        "daemon.ping",
        "daemon.info",
        "rpc.describe",
        "session.get",
        "session.list",
        "session.load",
        "session.messages.load",
        "settings.getAll",
        "health.get",
        "notifications.list",
        "conflicts.list",
        "approvals.list",
    }
)
"""Methods that change nothing, whatever their params."""

GHOST_SAFE = frozenset(
    {
        "agent.stop",
        "agent.prompt",
        "agent.approve",
        "session.restore",
        "session.clear",
        "session.purge",
        "project.purge",
        "conflicts.ack",
    }
)
"""State-changing methods that change nothing for a project or session that does not
exist. Any other method not in :data:`READ_ONLY` (agent.start, settings.set,
daemon.shutdown, and any method added later) is only sent invalid."""

ID_KINDS = ("int", "str", "neg", "frac", "big", "exp", "null")
GHOST_PROJECT = st.from_regex(r"ghost-[a-z0-9]{1,12}", fullmatch=True)
GHOST_SESSION = st.from_regex(r"ghost-[0-9a-f]{8,36}", fullmatch=True)
BAD_PROJECT_IDS = ("", "-a", ".a", "_a", "a b", "a/b", "é", "abc\n", "9" + "x" * 128)


@dataclass(frozen=True)
class Known:
    """What exists in the fuzzed daemon: one finished session of one project."""

    project_id: str
    session_id: str


def json_values(max_leaves: int = 6) -> SearchStrategy[Any]:
    """Any JSON value (integers of any size, no NaN or infinity)."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=16)
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def id_slots(must_fail: bool) -> SearchStrategy[IdSlot]:
    return st.sampled_from(ID_KINDS).map(lambda kind: IdSlot(kind, must_fail))


# --------------------------------------------------------------------------- values from schemas


def _types(schema: Mapping[str, Any]) -> set[str]:
    kind = schema.get("type", [])
    return {kind} if isinstance(kind, str) else set(kind)


def _json_types(value: object) -> set[str]:
    if value is None:
        return {"null"}
    if isinstance(value, bool):
        return {"boolean"}
    if isinstance(value, int):
        return {"integer", "number"}
    if isinstance(value, float):
        return {"number"}
    if isinstance(value, str):
        return {"string"}
    return {"array"} if isinstance(value, list) else {"object"}


_SAMPLES: tuple[Any, ...] = (None, True, 0, 1.5, "x", [], [1], {}, {"a": 1})


def valid_value(
    name: str, schema: Mapping[str, Any], known: Known, ghost: bool
) -> SearchStrategy[Any]:
    """A value ``schema`` accepts (ids of nothing that exists when ``ghost``)."""
    types = _types(schema)
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    if types == {"string"}:
        if name == "projectId":
            if ghost:
                return GHOST_PROJECT
            return st.one_of(
                st.just(known.project_id),
                GHOST_PROJECT,
                st.from_regex(schema["pattern"], fullmatch=True),
            )
        if name == "sessionId":
            if ghost:
                return GHOST_SESSION
            return st.one_of(
                st.just(known.session_id), GHOST_SESSION, st.text(min_size=1, max_size=40)
            )
        lo = int(schema.get("minLength", 0))
        hi = int(schema.get("maxBytes", schema.get("maxLength", 40)))
        text = (
            st.from_regex(schema["pattern"], fullmatch=True)
            if "pattern" in schema
            else st.text(min_size=lo, max_size=40)
        )
        return text.filter(lambda s: lo <= len(s) and len(s.encode()) <= hi)
    if types == {"integer"}:
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if types == {"number"}:
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if types == {"boolean"}:
        return st.booleans()
    if types == {"array"}:
        return st.lists(st.text(max_size=20), max_size=3)
    if types == {"object"}:
        return st.dictionaries(st.text(max_size=8), json_values(4), max_size=3)
    return json_values(4)


def invalid_value(schema: Mapping[str, Any]) -> SearchStrategy[Any]:
    """A value ``schema`` refuses, whatever else the request holds."""
    options: list[SearchStrategy[Any]] = []
    wrong = [v for v in _SAMPLES if not (_json_types(v) & _types(schema))]
    if wrong:
        options.append(st.sampled_from(wrong))
    if "enum" in schema:
        options.append(st.text(max_size=12).filter(lambda s: s not in schema["enum"]))
    if _types(schema) == {"integer"}:
        if "minimum" in schema:
            options.append(st.integers(max_value=schema["minimum"] - 1))
        if "maximum" in schema:
            options.append(st.integers(min_value=schema["maximum"] + 1))
    if _types(schema) == {"string"}:
        limit = schema.get("maxBytes", schema.get("maxLength"))
        if limit is not None:
            options.append(st.just("x" * (int(limit) + 1)))
        if schema.get("minLength", 0) >= 1:
            options.append(st.just(""))
        pattern = schema.get("pattern", "")
        if pattern == r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$":
            options.append(st.sampled_from(BAD_PROJECT_IDS))
        elif pattern.startswith("^[A-Za-z0-9]"):
            options.append(st.text(max_size=10).map(lambda s: "-" + s))
        elif "\\x00" in pattern:
            options.append(st.text(max_size=10).map(lambda s: s + "\x00"))
    return st.one_of(options)


# --------------------------------------------------------------------------- params and requests


def valid_params(
    schema: Mapping[str, Any], known: Known, ghost: bool
) -> SearchStrategy[dict[str, Any]]:
    props: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {k: valid_value(k, s, known, ghost) for k, s in props.items() if k in required},
        optional={
            k: valid_value(k, s, known, ghost) for k, s in props.items() if k not in required
        },
    )


def invalid_params(schema: Mapping[str, Any], known: Known) -> SearchStrategy[Any]:
    """Params of a method that its schema refuses, by construction."""
    props: Mapping[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    base = valid_params(schema, known, ghost=True)
    options: list[SearchStrategy[Any]] = [st.lists(json_values(3), max_size=3)]  # by position
    if schema.get("additionalProperties") is False:
        unknown = st.text(max_size=12).filter(lambda k: k not in props)
        options.append(st.tuples(base, unknown, json_values(3)).map(lambda t: {**t[0], t[1]: t[2]}))
    if required:
        options.append(
            st.tuples(base, st.sampled_from(required)).map(
                lambda t: {k: v for k, v in t[0].items() if k != t[1]}
            )
        )
    for name, prop in props.items():
        options.append(st.tuples(base, st.just(name), invalid_value(prop)).map(_with_member))
    return st.one_of(options)


def _with_member(t: tuple[dict[str, Any], str, Any]) -> dict[str, Any]:
    params, name, value = t
    return {**params, name: value}


def envelope(
    method: str, params: SearchStrategy[Any], must_fail: bool, notify: bool = True
) -> SearchStrategy[dict[str, Any]]:
    """A well-formed request (or notification) of ``method`` with these params."""
    ids: SearchStrategy[IdSlot | None] = id_slots(must_fail)
    if notify:
        ids = st.one_of(ids, st.none())

    def build(rid: IdSlot | None, p: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": p}
        if rid is not None:
            out["id"] = rid
        return out

    return st.builds(build, ids, params)


def method_requests(methods: Mapping[str, Any], known: Known) -> SearchStrategy[dict[str, Any]]:
    """Requests of every method ``rpc.describe`` lists (see the module doc)."""
    options: list[SearchStrategy[dict[str, Any]]] = []
    for method, spec in sorted(methods.items()):
        schema = spec["params"]
        invalid = envelope(method, invalid_params(schema, known), must_fail=True)
        if method in READ_ONLY:
            anything = st.one_of(
                valid_params(schema, known, ghost=False), st.none(), json_values(4)
            )
            options.append(st.one_of(envelope(method, anything, must_fail=False), invalid))
        elif method in GHOST_SAFE:
            ghosts = envelope(method, valid_params(schema, known, ghost=True), must_fail=False)
            options.append(st.one_of(ghosts, invalid))
        else:
            options.append(invalid)
    return st.one_of(options)


def _safe(doc: object) -> bool:
    """An arbitrary document names no method beyond the read-only ones."""
    if isinstance(doc, list):
        return all(_safe(entry) for entry in doc)
    if isinstance(doc, dict):
        method = doc.get("method")
        return not isinstance(method, str) or method in READ_ONLY or "." not in method
    return True


def request_like() -> SearchStrategy[dict[str, Any]]:
    """Objects shaped like requests, every member possibly wrong or missing."""
    members = {
        "jsonrpc": st.one_of(st.just("2.0"), json_values(2)),
        "id": st.one_of(id_slots(False), json_values(2)),
        "method": st.one_of(
            st.sampled_from(sorted(READ_ONLY)), st.text(max_size=12), json_values(2)
        ),
        "params": st.one_of(
            st.dictionaries(st.text(max_size=8), json_values(2), max_size=3), json_values(3)
        ),
    }
    base = st.fixed_dictionaries({}, optional=members)
    extra = st.dictionaries(st.text(max_size=8), json_values(2), max_size=2)
    return st.one_of(base, st.tuples(base, extra).map(lambda t: {**t[1], **t[0]})).filter(_safe)


def documents() -> SearchStrategy[Any]:
    """Arbitrary JSON documents and request-like objects (one frame each)."""
    return st.one_of(json_values(8).filter(_safe), request_like())


def payloads(docs: SearchStrategy[Any]) -> SearchStrategy[Message]:
    return st.builds(Payload, docs, st.booleans())


def _cycle(entries: list[Any], size: int) -> list[Any]:
    return [entries[i % len(entries)] for i in range(size)]


def batches(methods: Mapping[str, Any], known: Known) -> SearchStrategy[Message]:
    """Batches of 1..64 mixed entries, and now and then a few too many. A batch
    repeats up to 8 drawn entries (each id slot still gets its own id)."""
    entry = st.one_of(method_requests(methods, known), request_like(), json_values(4).filter(_safe))
    sizes = st.one_of(st.integers(1, 8), st.integers(1, 64), st.integers(65, 70))
    docs = st.builds(_cycle, st.lists(entry, min_size=1, max_size=8), sizes)
    return payloads(docs)


# --------------------------------------------------------------------------- raw frames


def _read_only_request(known: Known) -> bytes:
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "session.get",
            "params": {"projectId": known.project_id},
        }
    )


def _mutate(data: bytes, at: int, insert: bytes, cut: bool) -> bytes:
    at %= len(data) + 1
    return data[:at] if cut else data[:at] + insert + data[at:]


def _padded(size: int) -> bytes:
    head = orjson.dumps({"jsonrpc": "2.0", "id": "big", "method": "daemon.ping"})
    return head + b" " * (size - len(head))


LAYOUTS = ("bare", "delimited", "delimited-twice", "three", "non-empty-first", "two-delimiters")


def _layout(name: str, payload: bytes) -> Frames:
    frames = {
        "bare": (payload,),
        "delimited": (b"", payload),
        "delimited-twice": (b"", payload, payload),
        "three": (payload, payload, payload),
        "non-empty-first": (b"x", payload),
        "two-delimiters": (b"", b"", payload),
    }[name]
    return Frames(frames)


def frames(known: Known) -> SearchStrategy[Message]:
    """Arbitrary multipart messages: random frames, random bytes in every layout,
    damaged requests, and frames at and just over the 1 MiB cap (now and then)."""
    valid = _read_only_request(known)
    damaged = st.builds(
        _mutate, st.just(valid), st.integers(0, len(valid)), st.binary(max_size=3), st.booleans()
    )
    payload = st.one_of(st.binary(max_size=64), damaged, documents().map(_dumps))
    layouts = st.builds(_layout, st.sampled_from(LAYOUTS), payload)
    anything = st.lists(st.binary(max_size=32), min_size=1, max_size=5).map(
        lambda fs: Frames(tuple(fs))
    )
    big = st.integers(0, 40).flatmap(
        lambda n: (
            st.sampled_from([MIB, MIB + 1]).map(lambda size: Frames((b"", _padded(size))))
            if n == 0
            else layouts
        )
    )
    return st.one_of(anything, layouts, big)


def _dumps(doc: Any) -> bytes:
    """A document as bytes, for raw frames (no ids to assign: IdSlot becomes 7)."""

    def plain(v: Any) -> Any:
        if isinstance(v, IdSlot):
            return 7
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**64:
            return orjson.Fragment(str(v).encode())
        return v

    return orjson.dumps(plain(doc))
