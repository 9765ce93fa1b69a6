"""Fuzzing the daemon's RPC socket: what to send, what must come back, and the
exchange that checks it.

:func:`expected` is an independent model of the envelope rules (frame layouts,
the 1 MiB cap, batches of at most 64, which entries are answered and with which
id). :class:`RpcFuzzer` sends a round of messages pipelined over two DEALER
sockets (one for replies with the empty delimiter frame, one for bare replies),
collects the replies, and checks that every request with an id was answered
exactly once with that id and a well-formed response, that notifications were
never answered, that the daemon still answers ``daemon.ping`` and that the
watched state did not change. Strategies that build the messages live in
:mod:`tests.support.fuzz_strategies`.

Request ids are chosen when a round is sent (:class:`IdSlot`), unique across the
run, in every form the contract allows: integers, strings, fractions, integers
beyond 64 bits and exponent literals (written back exactly as sent), and null.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq

MIB = 1 << 20
MAX_BATCH = 64
INVALID_PARAMS = -32602

Key = tuple[str, str]
"""A response id as compared: the type and repr of its parsed value."""
NULL_KEY: Key = ("NoneType", "None")


@dataclass(frozen=True)
class IdSlot:
    """A request id chosen when the round is sent; ``must_fail``: the request is
    invalid by construction, so its answer must be an invalid_params error."""

    kind: str
    must_fail: bool = False


@dataclass(frozen=True)
class Frames:
    """A multipart message sent exactly as given."""

    frames: tuple[bytes, ...]


@dataclass(frozen=True)
class Payload:
    """A JSON document (which may hold :class:`IdSlot` ids), sent as one frame,
    after the empty delimiter frame when ``delimited``."""

    doc: Any
    delimited: bool = True


Message = Frames | Payload


# --------------------------------------------------------------------------- the model


class Num:
    """A JSON number as the text it was written with."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def literal_loads(data: bytes) -> Any:
    """Parse JSON keeping every number as its text (:class:`Num`), so that ids are
    compared by the digits sent; only for documents orjson (the daemon's parser)
    accepts."""
    return json.loads(data, parse_int=Num, parse_float=Num, parse_constant=_refuse)


def key_of(value: object) -> Key:
    """The id as compared: a number by its digits (a 64-bit integer, which is
    always written canonically, by its value), anything else by type and value."""
    if isinstance(value, Num):
        parsed = orjson.loads(value.text)
        return ("int", str(parsed)) if isinstance(parsed, int) else ("num", value.text)
    return (type(value).__name__, repr(value))


def _entry_answer(obj: object) -> Key | None:
    """The id an entry is answered with, or None when it is never answered."""
    if not isinstance(obj, dict):
        return NULL_KEY
    has_id = "id" in obj
    rid = obj.get("id")
    if has_id and not (rid is None or isinstance(rid, str | Num)):
        return NULL_KEY
    answered = key_of(rid)
    if obj.get("jsonrpc") != "2.0" or not isinstance(obj.get("method"), str):
        return answered
    if any(k not in ("jsonrpc", "id", "method", "params") for k in obj):
        return answered
    params = obj.get("params")
    if params is not None and not isinstance(params, dict | list):
        return answered
    return answered if has_id else None  # well-formed: a notification is never answered


@dataclass
class Expected:
    """What one message must get back: nothing, one response, or one batch of them."""

    delimited: bool
    kind: str  # "none", "single" or "batch"
    keys: list[Key] = field(default_factory=list)


def expected(frames: list[bytes]) -> Expected:
    """The answer the contract promises to one multipart message (see module doc)."""
    if len(frames) == 2 and frames[0] == b"":
        delimited, payload = True, frames[1]
    elif len(frames) == 1:
        delimited, payload = False, frames[0]
    else:
        return Expected(bool(frames) and frames[0] == b"", "single", [NULL_KEY])
    if len(payload) > MIB:
        return Expected(delimited, "single", [NULL_KEY])
    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Expected(delimited, "single", [NULL_KEY])
    doc = literal_loads(payload)
    if isinstance(doc, list):
        if not doc or len(doc) > MAX_BATCH:
            return Expected(delimited, "single", [NULL_KEY])
        keys = [k for k in map(_entry_answer, doc) if k is not None]
        return Expected(delimited, "batch" if keys else "none", keys)
    answer = _entry_answer(doc)
    return Expected(
        delimited, "none" if answer is None else "single", [] if answer is None else [answer]
    )


def check_response(response: object, literal: Any) -> Key:
    """A well-formed JSON-RPC 2.0 response (``literal``: the same, numbers as text);
    its id key."""
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    members = set(response)
    assert members in ({"jsonrpc", "id", "result"}, {"jsonrpc", "id", "error"}), response
    if "error" in response:
        error = response["error"]
        assert isinstance(error, dict), response
        assert isinstance(error.get("code"), int) and not isinstance(error["code"], bool), response
        assert isinstance(error.get("message"), str) and error["message"], response
    return key_of(literal["id"])


# --------------------------------------------------------------------------- the exchange


def _batch_canon(keys: list[Key]) -> tuple[tuple[Key, int], ...]:
    return tuple(sorted(collections.Counter(keys).items()))


@dataclass
class _Side:
    """One DEALER socket and what it must receive in a round."""

    sock: zmq.Socket[Any]
    delimited: bool
    frames: int = 0
    singles: collections.Counter[Key] = field(default_factory=collections.Counter)
    batches: list[tuple[tuple[Key, int], ...]] = field(default_factory=list)


class RpcFuzzer:
    """Sends rounds of messages to one daemon and checks what comes back.

    ``alive`` says whether the daemon process still runs; ``state`` reads the
    state that must never change (compared with its value at construction).
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        alive: Callable[[], bool],
        state: Callable[[], Any],
        reply_timeout: float = 15.0,
    ) -> None:
        self.rpc_url = rpc_url
        self.alive = alive
        self.state = state
        self.baseline = state()
        self.reply_timeout = reply_timeout
        self.cases = 0
        self.rounds = 0
        self._next_id = 0
        ctx: zmq.Context[Any] = zmq.Context.instance()
        self._sides = {flag: _Side(self._socket(ctx), flag) for flag in (True, False)}

    def _socket(self, ctx: zmq.Context[Any]) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.connect(self.rpc_url)
        return sock

    def close(self) -> None:
        for side in self._sides.values():
            side.sock.close(linger=0)

    def _reset(self) -> None:
        ctx: zmq.Context[Any] = zmq.Context.instance()
        for side in self._sides.values():
            side.sock.close(linger=0)
            side.sock = self._socket(ctx)

    # -- ids -----------------------------------------------------------------------

    def _id(self, slot: IdSlot, must_fail: dict[Key, bool]) -> Any:
        self._next_id += 1
        n = self._next_id
        value: Any
        if slot.kind == "null":
            return None
        if slot.kind == "str":
            value = f"fz-{n}"
        elif slot.kind == "neg":
            value = -n
        elif slot.kind == "frac":
            value = orjson.Fragment(f"{n}.5".encode())
        elif slot.kind == "big":
            value = orjson.Fragment(str(2**70 + n).encode())
        elif slot.kind == "exp":
            value = orjson.Fragment(f"{n}e0".encode())
        else:
            value = n
        must_fail[key_of(literal_loads(orjson.dumps(value)))] = slot.must_fail
        return value

    def _render(self, doc: Any, must_fail: dict[Key, bool]) -> Any:
        if isinstance(doc, IdSlot):
            return self._id(doc, must_fail)
        if isinstance(doc, dict):
            return {k: self._render(v, must_fail) for k, v in doc.items()}
        if isinstance(doc, list | tuple):
            return [self._render(v, must_fail) for v in doc]
        if isinstance(doc, int) and not isinstance(doc, bool) and not -(2**63) <= doc < 2**64:
            return orjson.Fragment(str(doc).encode())  # beyond what orjson writes
        return doc

    def render(self, message: Message, must_fail: dict[Key, bool]) -> list[bytes]:
        if isinstance(message, Frames):
            return list(message.frames)
        payload = orjson.dumps(self._render(message.doc, must_fail))
        return [b"", payload] if message.delimited else [payload]

    # -- a round -------------------------------------------------------------------

    def round(self, messages: list[Message]) -> None:
        """Send every message at once, then check the answers, the daemon and the state."""
        must_fail: dict[Key, bool] = {}
        sent: list[list[bytes]] = []
        for side in self._sides.values():
            side.frames, side.singles, side.batches = 0, collections.Counter(), []
        for message in messages:
            frames = self.render(message, must_fail)
            want = expected(frames)
            side = self._sides[want.delimited]
            if want.kind != "none":
                side.frames += 1
            if want.kind == "single":
                side.singles.update(want.keys)
            elif want.kind == "batch":
                side.batches.append(_batch_canon(want.keys))
            side.sock.send_multipart(frames, copy=False)
            sent.append(frames)
        self.cases += len(messages)
        self.rounds += 1
        try:
            for side in self._sides.values():
                self._collect(side, must_fail)
            self._ping()
        except AssertionError as exc:
            self._reset()  # late answers of this round must not be taken for the next's
            raise AssertionError(f"{exc}\nround sent: {_shown(sent)}") from None
        state = self.state()
        assert state == self.baseline, (
            f"state changed by a round of invalid requests:\nbefore {self.baseline}\n"
            f"after {state}\nround sent: {_shown(sent)}"
        )

    def _collect(self, side: _Side, must_fail: dict[Key, bool]) -> None:
        got_frames: list[Any] = []
        deadline = time.monotonic() + self.reply_timeout
        while len(got_frames) < side.frames:
            left = deadline - time.monotonic()
            if left <= 0 or not side.sock.poll(int(left * 1000)):
                break
            got_frames.append(self._reply(side))
        while side.sock.poll(0):  # anything more already here is one answer too many
            got_frames.append(self._reply(side))
        assert self.alive(), "the daemon died"
        singles: collections.Counter[Key] = collections.Counter()
        batches: list[tuple[tuple[Key, int], ...]] = []
        for reply, literal in got_frames:
            if isinstance(reply, list):
                keys = [
                    self._checked(r, lit, must_fail) for r, lit in zip(reply, literal, strict=True)
                ]
                assert keys, "an empty batch answer"
                batches.append(_batch_canon(keys))
            else:
                singles[self._checked(reply, literal, must_fail)] += 1
        where = "delimited" if side.delimited else "bare"
        assert singles == side.singles, (
            f"{where} single answers differ: missing {side.singles - singles}, "
            f"unexpected {singles - side.singles}"
        )
        assert sorted(batches) == sorted(side.batches), (
            f"{where} batch answers differ: got {sorted(batches)}, want {sorted(side.batches)}"
        )

    def _reply(self, side: _Side) -> Any:
        frames = side.sock.recv_multipart()
        if side.delimited:
            assert len(frames) == 2 and frames[0] == b"", f"reply layout {frames!r:.300}"
        else:
            assert len(frames) == 1, f"reply layout {frames!r:.300}"
        return orjson.loads(frames[-1]), literal_loads(frames[-1])

    @staticmethod
    def _checked(response: object, literal: Any, must_fail: dict[Key, bool]) -> Key:
        key = check_response(response, literal)
        if must_fail.get(key):
            assert isinstance(response, dict) and "error" in response, (
                f"an invalid request was served: {response!r:.500}"
            )
            assert response["error"]["code"] == INVALID_PARAMS, response
        return key

    def _ping(self) -> None:
        """daemon.ping answers (and nothing else comes first) within the reply timeout."""
        side = self._sides[True]
        self._next_id += 1
        rid = f"ping-{self._next_id}"
        side.sock.send_multipart(
            [b"", orjson.dumps({"jsonrpc": "2.0", "id": rid, "method": "daemon.ping"})]
        )
        assert side.sock.poll(int(self.reply_timeout * 1000)), (
            f"daemon.ping unanswered for {self.reply_timeout}s (alive: {self.alive()})"
        )
        reply, _literal = self._reply(side)
        assert isinstance(reply, dict) and reply.get("id") == rid, (
            f"unexpected answer {reply!r:.500}"
        )
        assert reply["result"]["pong"] is True, reply

    def finish(self, settle: float = 0.5) -> None:
        """No late answer comes, the daemon runs and the state is the baseline."""
        time.sleep(settle)
        for side in self._sides.values():
            late = []
            while side.sock.poll(0):
                late.append(self._reply(side))
            assert not late, f"answers after the last round: {late!r:.1000}"
        self._ping()
        assert self.alive(), "the daemon died"
        assert self.state() == self.baseline


def _shown(sent: list[list[bytes]], limit: int = 4000) -> str:
    text = repr([[f[:300] for f in frames] for frames in sent])
    return text if len(text) <= limit else text[:limit] + "..."
