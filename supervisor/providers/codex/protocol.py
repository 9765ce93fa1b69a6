"""The codex dialect: JSON-RPC with one ``codex app-server`` process per session.

:class:`CodexProtocol` is the session's line protocol (``opening``, ``prompt``,
``interrupt``, ``feed``). It owns the JSON-RPC side: request ids, the
lifecycle, the current turn, and the answer to every server request.
Notifications are handed to :class:`~.items.Transcript`, which owns their
meaning. Lines are JSON objects ending in ``\\n``; ``jsonrpc`` is left out, as
the app-server itself does.

Lifecycle::

    opening(prompt)  → initialize {clientInfo: corral, capabilities.experimentalApi}
    its result       → initialized, then thread/start {cwd, approvalPolicy, sandbox,
                       model, developerInstructions, config}
                       or thread/resume {threadId, excludeTurns: true, …}
    its result       → init (provider_session_id = thread.id, model, cwd),
                       turn/start {threadId, input: [{type: text, text}]}
    turn/start result → the current turn id (for turn/interrupt)
    turn/completed   → turn_end; a prompt that waited starts its turn

Codex runs one turn at a time: :attr:`mid_turn_prompts` is False, and a prompt
handed over while a turn runs (or before the thread is open) waits here and
starts when the turn ends.

``interrupt()`` answers every pending approval ``cancel`` (a denial that
also ends the turn), then writes ``turn/interrupt {threadId, turnId}`` and
``thread/backgroundTerminals/clean {threadId}``: a command that was running
survives an interrupt (and even the next turn) until its background terminal
is cleaned. Before the turn id is known the interrupt is sent as soon as
``turn/start`` answers; before the thread is open the first turn is not
started at all and the session gets ``turn_end`` "interrupted".

Server requests are never left hanging. The three approval requests (a
command, a file change, extra permissions) become ``approval`` values for a
person to answer (``approvals.py``): they are kept as pending until
:meth:`CodexProtocol.answer` gives Codex the person's decision, an interrupt
answers them ``cancel`` first, or Codex withdraws them
(``serverRequest/resolved``, the end of their turn, the end of the process).
Everything else Codex asks with an id is **declined**, with the response
shape its schema wants (:data:`DECLINES`), and reported as a ``system`` note
naming what was declined; ``currentTime/read`` is simply answered.

An error answer to one of corral's requests becomes an ``error``; when it
kills the start (``initialize``, ``thread/start``, ``thread/resume``) or a
turn (``turn/start``) a ``turn_end`` with ``is_error`` follows (``error_info``
``resume_failed`` for a failed resume, so the caller can start afresh); the
next prompt tries the failed step again. A line that is not a JSON object
becomes ``unknown`` with its text; nothing raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision, Capabilities
from corral.supervisor.providers.codex.approvals import (
    APPROVAL_METHODS,
    PendingApproval,
    answer_result,
    approval_item,
    cancel_result,
)
from corral.supervisor.providers.codex.items import Transcript
from corral.supervisor.providers.codex.options import CodexSessionOptions
from corral.supervisor.providers.codex.tools import unwrap_command
from corral.supervisor.providers.values import as_dict, as_str

__all__ = ["DECLINES", "CodexProtocol", "decline"]

log = logging.getLogger("corral.providers.codex")

UNPARSED_LIMIT = 4096
"""How many characters of an undecodable line are kept."""

METHOD_NOT_HANDLED = -32601
REFUSAL = "corral does not answer this Codex request yet"

# Requests whose failure ends the start (and so the session's first turn).
_START_METHODS = frozenset({"initialize", "thread/start", "thread/resume"})


def _line(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def _as_text(data: bytes) -> str:
    return data.decode("utf-8", "replace").rstrip("\r\n")


def _key(request_id: Any) -> bytes:
    """A request id as a dict key (JSON ids may be numbers or strings: 1 is not "1")."""
    try:
        return orjson.dumps(request_id)
    except TypeError:
        return repr(request_id).encode()


# ---------------------------------------------------------------- server requests

Decline = Callable[[dict[str, Any], Transcript], tuple[dict[str, Any], str]]


def _user_input(params: dict[str, Any], _t: Transcript) -> tuple[dict[str, Any], str]:
    questions = [as_str(as_dict(q).get("question")) for q in params.get("questions") or []]
    shown = "; ".join(q for q in questions if q)
    return {"answers": {}}, "answer a question" + (f": {shown}" if shown else "")


def _elicitation(params: dict[str, Any], _t: Transcript) -> tuple[dict[str, Any], str]:
    server = as_str(params.get("serverName")) or "an MCP server"
    return {"action": "decline", "content": None}, f"give input to {server}"


def _dynamic_tool(params: dict[str, Any], _t: Transcript) -> tuple[dict[str, Any], str]:
    tool = as_str(params.get("tool")) or "a client tool"
    answer = {"contentItems": [{"type": "inputText", "text": REFUSAL}], "success": False}
    return answer, f"run the client-side tool {tool}"


def _legacy_exec(params: dict[str, Any], _t: Transcript) -> tuple[dict[str, Any], str]:
    argv = params.get("command")
    shown = " ".join(a for a in argv if isinstance(a, str)) if isinstance(argv, list) else ""
    decision = {"denied": {"rejection": REFUSAL}}
    return {"decision": decision}, f"run `{unwrap_command(shown)}`" if shown else "run a command"


def _legacy_patch(params: dict[str, Any], _t: Transcript) -> tuple[dict[str, Any], str]:
    paths = sorted(str(p) for p in as_dict(params.get("fileChanges")))
    decision = {"denied": {"rejection": REFUSAL}}
    return {"decision": decision}, "change " + (", ".join(paths) if paths else "files")


#: method -> how to decline it: (the response ``result``, what was asked). The
#: approval requests are not here: a person answers them (``approvals.py``).
DECLINES: dict[str, Decline] = {
    "item/tool/requestUserInput": _user_input,
    "mcpServer/elicitation/request": _elicitation,
    "item/tool/call": _dynamic_tool,
    "execCommandApproval": _legacy_exec,
    "applyPatchApproval": _legacy_patch,
}


def decline(
    method: str, params: dict[str, Any], transcript: Transcript
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(result, error, note) answering server request ``method``.

    Exactly one of result/error is set; note says what was declined (None when
    the request was simply answered).
    """
    if method == "currentTime/read":
        return {"currentTimeAt": int(time.time())}, None, None
    handler = DECLINES.get(method)
    if handler is not None:
        result, what = handler(params, transcript)
        return result, None, f"Declined Codex's request to {what}: {REFUSAL}."
    error = {"code": METHOD_NOT_HANDLED, "message": f"{REFUSAL}: {method}"}
    return None, error, f"Declined Codex's request {method}: {REFUSAL}."


# ---------------------------------------------------------------- the protocol


class CodexProtocol:
    """One codex session's dialect (the session's ``LineProtocol``). Thread-safe:
    ``feed`` runs on the reader thread while ``prompt``/``interrupt`` come from
    the session."""

    mid_turn_prompts = False

    def __init__(self, options: CodexSessionOptions) -> None:
        self.options = options
        self.transcript = Transcript(prices=options.prices, model=options.model)
        self._lock = threading.Lock()
        self._next_id = 0
        self._pending: dict[int, str] = {}
        self._phase = "new"  # new, handshake, opening, ready, failed
        self._thread_id: str | None = options.resume_thread_id
        self._waiting: deque[str] = deque()
        self._turn_active = False
        self._turn_id: str | None = None
        self._interrupt_wanted = False
        self._cancelled = False
        self._failed_step: str | None = None
        # approval requests waiting for a person, by their id's JSON encoding
        self._approvals: dict[bytes, PendingApproval] = {}
        self._notes: list[Normalized] = []  # said with the next line fed

    # ------------------------------------------------------------ LineProtocol

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(mid_turn_prompts=False)

    @property
    def thread_id(self) -> str | None:
        """The Codex thread (corral's provider session id), once known."""
        return self._thread_id

    @property
    def turn_id(self) -> str | None:
        """The running turn's id, while a turn runs and Codex has named it."""
        return self._turn_id

    def opening(self, prompt: str) -> list[bytes]:
        """``initialize``; the prompt waits until the thread is open."""
        with self._lock:
            self._waiting.append(prompt)
            self._phase = "handshake"
            return [self._request("initialize", self._initialize_params())]

    def prompt(self, text: str) -> list[bytes]:
        """``turn/start`` now, or later when the running turn ends. After a failed
        start the failed step is tried again, so a prompt never waits for nothing."""
        with self._lock:
            self._waiting.append(text)
            if self._phase == "failed":
                return self._retry_start()
            return self._next_turn()

    @property
    def pending_approvals(self) -> list[dict[str, Any]]:
        """The approval requests waiting for an answer (their ``raw["request"]``)."""
        with self._lock:
            return [
                {"id": p.request_id, "method": p.method, "itemId": p.item_id}
                for p in self._approvals.values()
            ]

    def answer(self, request: dict[str, Any], decision: ApprovalDecision) -> list[bytes]:
        """The response to a pending approval request (``raw["request"]`` of its
        ``approval`` item); empty when it is unknown or was answered already."""
        if not isinstance(request, dict) or "id" not in request:
            return []
        key = _key(request["id"])
        with self._lock:
            pending = self._approvals.get(key)
            if pending is None or request.get("method", pending.method) != pending.method:
                return []
            del self._approvals[key]
            result, note = answer_result(pending, decision)
            if note is not None:
                self._notes.append(Normalized(kind="system", text=note))
            return [_line({"id": pending.request_id, "result": result})]

    def interrupt(self) -> list[bytes]:
        """``cancel`` for every pending approval, then ``turn/interrupt`` +
        ``thread/backgroundTerminals/clean`` (see module doc)."""
        with self._lock:
            lines = [
                _line({"id": p.request_id, "result": cancel_result(p)})
                for p in self._approvals.values()
            ]
            self._approvals.clear()
            self._waiting.clear()
            if self._phase != "ready":
                self._cancelled = True
                return lines
            if self._turn_active and self._turn_id is None:
                self._interrupt_wanted = True
                return lines
            return lines + self._interrupt_lines()

    def feed(self, line: bytes) -> tuple[list[Normalized], list[bytes]]:
        """One stdout line: normalized items, and the lines to write back."""
        if not line.strip():
            return [], []
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            return [self._unparsed(line)], []
        if not isinstance(message, dict):
            return [self._unparsed(line)], []
        try:
            with self._lock:
                items, lines = self._dispatch(message)
                if self._notes:
                    items, self._notes = self._notes + items, []
                return items, lines
        except Exception:  # defensive: a protocol bug must not kill the session
            log.exception("codex app-server: failed to handle a line")
            return [Normalized(kind="unknown", raw={"unhandled": message})], []

    def close_open(self, reason: str = "the provider process ended") -> list[Normalized]:
        """Close the items still open (the process ended mid-turn): partial texts and
        an ``is_error`` result for each running tool call."""
        with self._lock:
            self._approvals.clear()  # nobody can answer them any more
            return self.transcript.close_open(reason)

    # ------------------------------------------------------------ writing

    def _request(self, method: str, params: dict[str, Any]) -> bytes:
        request_id = self._next_id
        self._next_id += 1
        self._pending[request_id] = method
        return _line({"method": method, "id": request_id, "params": params})

    def _notify(self, method: str) -> bytes:
        return _line({"method": method})

    def _interrupt_lines(self) -> list[bytes]:
        if self._thread_id is None:
            return []
        lines = []
        if self._turn_active and self._turn_id is not None:
            lines.append(
                self._request(
                    "turn/interrupt", {"threadId": self._thread_id, "turnId": self._turn_id}
                )
            )
        lines.append(
            self._request("thread/backgroundTerminals/clean", {"threadId": self._thread_id})
        )
        return lines

    def _next_turn(self) -> list[bytes]:
        """``turn/start`` for the oldest waiting prompt, when the thread is free."""
        if self._phase != "ready" or self._turn_active or not self._waiting:
            return []
        text = self._waiting.popleft()
        params: dict[str, Any] = {
            "threadId": self._thread_id,
            "input": [{"type": "text", "text": text}],
        }
        if self.options.effort:
            params["effort"] = self.options.effort
        self._turn_active = True
        self._turn_id = None
        return [self._request("turn/start", params)]

    def _retry_start(self) -> list[bytes]:
        if self._failed_step == "initialize":
            self._phase = "handshake"
            return [self._request("initialize", self._initialize_params())]
        self._phase = "opening"
        return [self._open_thread()]

    def _initialize_params(self) -> dict[str, Any]:
        return {
            "clientInfo": {
                "name": self.options.client_name,
                "title": "corral",
                "version": self.options.client_version,
            },
            "capabilities": {"experimentalApi": True},
        }

    def _open_thread(self) -> bytes:
        if self.options.resume_thread_id:
            params = self.options.resume_params(self.options.resume_thread_id)
            return self._request("thread/resume", params)
        return self._request("thread/start", self.options.thread_params())

    # ------------------------------------------------------------ reading

    def _unparsed(self, line: bytes) -> Normalized:
        text = _as_text(line)[:UNPARSED_LIMIT]
        return Normalized(kind="unknown", text=text, raw={"unparsed": text})

    def _dispatch(self, message: dict[str, Any]) -> tuple[list[Normalized], list[bytes]]:
        method = message.get("method")
        has_id = "id" in message and message["id"] is not None
        if isinstance(method, str):
            params = as_dict(message.get("params"))
            if has_id:
                return self._server_request(message["id"], method, params)
            return self._notification(method, params), self._after_notification(method, params)
        if has_id and ("result" in message or "error" in message):
            return self._response(message)
        return [Normalized(kind="unknown", raw=message)], []

    def _response(self, message: dict[str, Any]) -> tuple[list[Normalized], list[bytes]]:
        request_id = message["id"]
        method = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        error = message.get("error")
        if error is not None:
            return self._error_response(method, as_dict(error)), self._next_turn()
        if method is None:
            log.debug("codex app-server: answer to an unknown request id %r", request_id)
            return [], []
        result = as_dict(message.get("result"))
        if method == "initialize":
            self._phase = "opening"
            return [], [self._notify("initialized"), self._open_thread()]
        if method in ("thread/start", "thread/resume"):
            return self._thread_opened(result)
        if method == "turn/start":
            turn_id = as_str(as_dict(result.get("turn")).get("id"))
            if turn_id and self._turn_active and self._turn_id is None:
                self._turn_id = turn_id
                self.transcript.own_turn(turn_id)
                if self._interrupt_wanted:
                    self._interrupt_wanted = False
                    return [], self._interrupt_lines()
        return [], []

    def _thread_opened(self, result: dict[str, Any]) -> tuple[list[Normalized], list[bytes]]:
        thread = as_dict(result.get("thread"))
        self._thread_id = as_str(thread.get("id")) or self._thread_id
        model = as_str(result.get("model")) or as_str(thread.get("model")) or self.options.model
        self.transcript.model = model
        self._phase = "ready"
        items = [
            Normalized(
                kind="init",
                provider_session_id=self._thread_id,
                model=model,
                cwd=as_str(result.get("cwd")) or as_str(thread.get("cwd")) or self.options.cwd,
            )
        ]
        if self._cancelled:
            self._cancelled = False
            self._waiting.clear()
            items.append(Normalized(kind="turn_end", is_error=True, text="interrupted"))
            return items, []
        return items, self._next_turn()

    def _error_response(self, method: str | None, error: dict[str, Any]) -> list[Normalized]:
        message = as_str(error.get("message")) or "unknown error"
        code = error.get("code")
        text = f"codex {method or 'request'} failed: {message}"
        items = [Normalized(kind="error", text=text, raw={"method": method, "code": code})]
        if method in _START_METHODS:
            self._phase = "failed"
            self._failed_step = method
            self._waiting.clear()
            self._cancelled = False
            info = "resume_failed" if method == "thread/resume" else None
            items.append(Normalized(kind="turn_end", is_error=True, text=text, error_info=info))
        elif method == "turn/start":
            self._turn_active = False
            self._turn_id = None
            self._interrupt_wanted = False
            items.append(Normalized(kind="turn_end", is_error=True, text=text))
        return items

    def _server_request(
        self, request_id: Any, method: str, params: dict[str, Any]
    ) -> tuple[list[Normalized], list[bytes]]:
        if method in APPROVAL_METHODS:
            item, pending = approval_item(request_id, method, params, self.transcript)
            self._approvals[_key(request_id)] = pending
            return [item], []  # answered later, by a person (see answer())
        result, error, note = decline(method, params, self.transcript)
        answer: dict[str, Any] = {"id": request_id}
        if error is not None:
            answer["error"] = error
        else:
            answer["result"] = result
        items = [Normalized(kind="system", text=note)] if note else []
        return items, [_line(answer)]

    def _foreign(self, params: dict[str, Any]) -> bool:
        """Whether a notification belongs to another thread (a sub-agent's)."""
        thread_id = as_str(params.get("threadId"))
        return (
            thread_id is not None and self._thread_id is not None and thread_id != self._thread_id
        )

    def _notification(self, method: str, params: dict[str, Any]) -> list[Normalized]:
        if method == "serverRequest/resolved" and "requestId" in params:
            # Codex no longer waits for it (answered, or withdrawn at a turn's end)
            self._approvals.pop(_key(params["requestId"]), None)
        if self._foreign(params):
            return []
        if method == "turn/started":
            turn_id = as_str(as_dict(params.get("turn")).get("id"))
            if turn_id and self._turn_active and self._turn_id is None:
                self._turn_id = turn_id
                self.transcript.own_turn(turn_id)
            return []
        if method == "turn/completed":
            self._turn_active = False
            self._turn_id = None
            self._interrupt_wanted = False
            self._forget_approvals(as_str(as_dict(params.get("turn")).get("id")))
        return self.transcript.notification(method, params)

    def _forget_approvals(self, turn_id: str | None) -> None:
        """A turn ended: Codex waits for none of its approval requests any more."""
        for key, pending in list(self._approvals.items()):
            if turn_id is None or pending.turn_id in (None, turn_id):
                del self._approvals[key]

    def _after_notification(self, method: str, params: dict[str, Any]) -> list[bytes]:
        if method == "turn/completed" and not self._foreign(params):
            return self._next_turn()
        if method == "turn/started" and self._interrupt_wanted and self._turn_id is not None:
            self._interrupt_wanted = False
            return self._interrupt_lines()
        return []
