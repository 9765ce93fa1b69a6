"""Claude Code's stream-json dialect as a LineProtocol (the mock agent speaks it too).

Owns the split of what the CLI prints between the output parser
(:class:`~.stream.ClaudeStreamParser`) and the requests it makes of corral:

* ``control_request`` ``can_use_tool`` (a permission prompt, with
  ``--permission-prompt-tool=stdio``) becomes one ``approval`` value; the CLI
  waits until :meth:`ClaudeDialect.answer` writes the person's decision.
* any other ``control_request`` subtype (``hook_callback``, ``mcp_message``,
  ``elicitation``, ones not known yet) is answered at once with an error
  ``control_response`` and logged once per subtype: the CLI never waits for
  corral on something corral does not serve. A malformed ``can_use_tool`` is
  refused the same way.
* ``control_cancel_request`` (the CLI withdrew a prompt, e.g. after an
  interrupt) becomes a ``status`` value ``approval_cancelled`` whose ``text`` and
  ``raw["request"]["request_id"]`` name the withdrawn prompt.

Prompts are user lines on stdin, the interrupt is a ``control_request`` of
subtype ``interrupt``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import orjson

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, Capabilities
from corral.supervisor.providers.claude import approvals, stream

__all__ = ["INTERRUPT_REQUEST_ID", "ClaudeDialect"]

logger = logging.getLogger("corral.providers.claude")

INTERRUPT_REQUEST_ID = "corral-stop"

#: Lines that may be one of the CLI's requests (a cheap filter before decoding;
#: the decoded ``type`` decides).
_CONTROL_MARKERS = (b'"control_request"', b'"control_cancel_request"')

# Refused subtypes are logged once per process; bounded like the parser's set.
_LOGGED_SUBTYPES: set[str] = set()
_LOGGED_LIMIT = 256
_LOGGED_LOCK = threading.Lock()


def _log_refused(subtype: str) -> None:
    subtype = subtype[:100]
    with _LOGGED_LOCK:
        if subtype in _LOGGED_SUBTYPES or len(_LOGGED_SUBTYPES) >= _LOGGED_LIMIT:
            return
        _LOGGED_SUBTYPES.add(subtype)
    logger.warning(
        "claude: control request %r is not served by corral (answered with an error)", subtype
    )


def _decode_control(line: bytes) -> dict[str, Any] | None:
    """The decoded line when it is a control request or cancel, else None."""
    if not any(marker in line for marker in _CONTROL_MARKERS):
        return None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if isinstance(obj, dict) and obj.get("type") in ("control_request", "control_cancel_request"):
        return obj
    return None


class ClaudeDialect:
    """The :class:`~corral.supervisor.providers.handles.stdio_stream.LineProtocol`
    of one Claude Code (or mock agent) process."""

    def __init__(self) -> None:
        self._parser = stream.ClaudeStreamParser()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mid_turn_prompts=True)

    def opening(self, prompt: str) -> list[bytes]:
        return [stream.encode_user_message(prompt)]

    def prompt(self, text: str) -> list[bytes]:
        return [stream.encode_user_message(text)]

    def interrupt(self) -> list[bytes]:
        return [stream.encode_interrupt(INTERRUPT_REQUEST_ID)]

    def feed(self, line: bytes) -> tuple[list[Normalized], list[bytes]]:
        obj = _decode_control(line)
        if obj is None:
            return self._parser.feed_line(line), []
        if obj["type"] == "control_cancel_request":
            return self._cancelled(obj), []
        return self._request(obj)

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> list[bytes]:
        return approvals.encode_answer(request, decision)

    # -- the CLI's requests -------------------------------------------------

    @staticmethod
    def _cancelled(obj: dict[str, Any]) -> list[Normalized]:
        request_id = obj.get("request_id")
        if not isinstance(request_id, str):
            return [Normalized(kind="unknown", raw=obj)]
        return [
            Normalized(
                kind="status",
                status="approval_cancelled",
                text=request_id,
                raw={"request": {"request_id": request_id}},
            )
        ]

    @staticmethod
    def _request(obj: dict[str, Any]) -> tuple[list[Normalized], list[bytes]]:
        request_id = obj.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            _log_refused("<no request_id>")
            return [Normalized(kind="unknown", raw=obj)], []
        request = obj.get("request")
        request = request if isinstance(request, dict) else {}
        subtype = request.get("subtype")
        subtype = subtype if isinstance(subtype, str) else repr(subtype)
        if subtype == "can_use_tool":
            item = approvals.approval_item(request_id, request)
            if item is not None:
                return [item], []
            _log_refused("can_use_tool (malformed)")
            message = "malformed can_use_tool request: it needs tool_name and an input object"
        else:
            _log_refused(subtype)
            message = f"corral does not serve control requests of subtype {subtype}"
        return [], [approvals.encode_error(request_id, message)]
