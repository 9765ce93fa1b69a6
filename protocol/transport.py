"""What the synchronous and the asyncio clients share, without any I/O.

Building JSON-RPC requests, recognising the reply to a request, decoding event
messages, tracking ``eseq`` per daemon run, and :class:`DaemonUnreachable`, the
error every client raises when the daemon does not answer in time. Kept free of
heavy imports: a client command pays only for ZeroMQ, orjson and this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from corral.protocol.errors import RpcError, error_from_json

__all__ = [
    "HEARTBEAT_TOPIC",
    "DaemonUnreachable",
    "EseqTracker",
    "camel",
    "decode_event",
    "decode_reply",
    "make_request",
    "result_of",
]

HEARTBEAT_TOPIC = "daemon/daemon.heartbeat"
"""The topic of the daemon's heartbeat, published every second (contract §5)."""

START_HINT = "start it with: corral serve  (or: systemctl --user start corral)"


class DaemonUnreachable(TimeoutError):
    """No answer from the daemon within the timeout: it is down, or too busy to answer.

    A :class:`TimeoutError`, so code written against the earlier client keeps working.
    """

    def __init__(self, url: str, timeout: float, what: str = "a request") -> None:
        self.url = url
        self.timeout = timeout
        self.what = what
        super().__init__(f"the corral daemon at {url} did not answer {what} within {timeout:g}s")

    @property
    def hint(self) -> str:
        """What a person can do about it."""
        return START_HINT


def camel(name: str) -> str:
    """``max_turns`` -> ``maxTurns`` (contract names are camelCase)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def make_request(
    method: str, params: Mapping[str, Any] | None, rid: int | str | None = None
) -> dict[str, Any]:
    """A JSON-RPC request object; without ``rid`` a notification."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rid is not None:
        request["id"] = rid
    if params is not None:
        request["params"] = dict(params)
    return request


def decode_reply(frames: list[bytes]) -> object:
    """The decoded body of a ``["", reply]`` (or bare ``[reply]``) message, else None."""
    if len(frames) == 2 and frames[0] == b"":
        body = frames[1]
    elif len(frames) == 1:
        body = frames[0]
    else:
        return None
    try:
        return orjson.loads(body)
    except ValueError:
        return None


def result_of(reply: Mapping[str, Any]) -> Any:
    """The ``result`` of a response, or its error raised as the typed :class:`RpcError`."""
    if "error" in reply:
        error = reply["error"]
        raise error_from_json(error if isinstance(error, dict) else {})
    return reply.get("result")


def error_of(reply: Mapping[str, Any]) -> RpcError | None:
    """The typed error of a response, or None for a success."""
    if "error" not in reply:
        return None
    error = reply["error"]
    return error_from_json(error if isinstance(error, dict) else {})


def decode_event(frames: list[bytes]) -> tuple[str, dict[str, Any]] | None:
    """``(topic, frame)`` of a ``[topic, JSON object]`` message, else None."""
    if len(frames) != 2:
        return None
    try:
        topic = frames[0].decode()
        frame = orjson.loads(frames[1])
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
    return topic, frame


class EseqTracker:
    """Follows ``eseq`` per daemon run (``boot``): counts jumps and daemon restarts.

    ``eseq`` counts the events of every topic, so jumps mean something only to a
    subscriber of everything; ``track_gaps`` says whether to count them.
    """

    def __init__(self) -> None:
        self.last_eseq: dict[str, int] = {}
        """boot -> last eseq seen."""
        self.boot: str | None = None
        """The boot of the newest event seen."""
        self.gaps = 0
        """Number of eseq jumps seen."""
        self.missed = 0
        """Number of events the jumps skipped."""
        self.restarts = 0
        """Times the boot changed after the first event."""

    def track(self, frame: Mapping[str, Any], track_gaps: bool = True) -> bool:
        """Record one event; True when it reveals missed events or a new daemon run."""
        boot, eseq = frame.get("boot"), frame.get("eseq")
        if not isinstance(eseq, int) or not isinstance(boot, str | int):
            return False
        key = str(boot)
        lost = False
        if self.boot is not None and key != self.boot and key not in self.last_eseq:
            self.restarts += 1
            lost = True
        self.boot = key
        last = self.last_eseq.get(key)
        if last is not None and eseq != last + 1 and track_gaps:
            self.gaps += 1
            self.missed += max(0, eseq - last - 1)
            lost = True
        self.last_eseq[key] = eseq if last is None else max(last, eseq)
        return lost
