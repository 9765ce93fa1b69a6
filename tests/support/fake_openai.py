"""A scriptable fake OpenAI Responses API server for driving the real Codex CLI.

It owns the wire format Codex expects from ``POST /v1/responses`` (streamed as
server-sent events), scripted error answers, and the record of every request it
received. Stdlib only; it listens on 127.0.0.1 with an ephemeral port, serves
each connection on its own thread and shuts itself down after a bounded lifetime.

A *script* is either a sequence of responses consumed one per request, or a
callable taking the request body and returning a response (or ``None`` for the
default). Once a sequence is exhausted the server answers a short text "done".
A response is a :class:`Reply` (output items streamed as SSE, optionally ending
in ``response.failed`` or cut off before ``response.completed``) or an
:class:`ErrorReply` (an HTTP error status with an OpenAI error body).

Output items mirror what Codex's tool set (model ``gpt-5.5``) expects:
:func:`message` (``output_text``), :func:`reasoning` (a reasoning summary),
:func:`exec_command` (a function call to the PTY shell tool; the next request
carries its ``function_call_output``) and :func:`apply_patch` (the freeform
custom tool; the next request carries its ``custom_tool_call_output``).

    with FakeOpenAI(script_exec("echo hi", "It printed hi.")) as srv:
        env.update(codex_test_env(home, srv.port))
        ...
        assert "hi" in function_outputs(srv.requests[1]["body"])[0]
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from tests.support.fake_http import DEFAULT_MAX_LIFETIME_S as DEFAULT_MAX_LIFETIME_S
from tests.support.fake_http import FakeHTTPServer, ScriptedApiHandler

DEFAULT_CHUNK_CHARS = 16
DONE_TEXT = "done"

#: Headers never recorded (credentials).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})

#: OpenAI error ``type`` and ``code`` for each HTTP status the fake can answer with.
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}

ItemKind = Literal["message", "reasoning", "function_call", "custom_tool_call"]


@dataclass(frozen=True)
class Item:
    """One output item of a scripted reply."""

    kind: ItemKind
    text: str = ""
    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    call_id: str = ""


@dataclass(frozen=True)
class Usage:
    """The ``usage`` of ``response.completed`` (OpenAI semantics: cached ⊂ input,
    reasoning ⊂ output)."""

    input_tokens: int = 10
    output_tokens: int = 5
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass(frozen=True)
class Reply:
    """A streamed answer.

    ``delay`` is slept before each delta event; ``chunk_chars`` is how many
    characters go in one delta. ``fail`` ends the stream with ``response.failed``
    (that message) after the items; ``truncate_after`` ends it cleanly but
    without ``response.completed`` after that many items (Codex retries both).
    """

    items: tuple[Item, ...]
    delay: float = 0.0
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    usage: Usage = field(default_factory=Usage)
    fail: str | None = None
    fail_code: str = "server_error"
    truncate_after: int | None = None


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error answer: ``status`` with ``{"error": {message, type, code}}``."""

    status: int
    message: str | None = None
    error_type: str | None = None
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        """The JSON error body for this status."""
        kind, code = ERROR_KINDS.get(self.status, ("server_error", None))
        return {
            "error": {
                "message": self.message or f"fake error (HTTP {self.status})",
                "type": self.error_type or kind,
                "param": None,
                "code": self.code if self.code is not None else code,
            }
        }


Response: TypeAlias = Reply | ErrorReply
ScriptFn: TypeAlias = Callable[[dict[str, Any]], Response | None]
Script: TypeAlias = Sequence[Response] | ScriptFn


# --- building replies and scripts -------------------------------------------------


def message(text: str) -> Item:
    """An assistant message (``output_text``)."""
    return Item(kind="message", text=text)


def reasoning(summary: str) -> Item:
    """A reasoning item with one summary part."""
    return Item(kind="reasoning", text=summary)


def function_call(name: str, arguments: dict[str, Any], call_id: str = "") -> Item:
    """A function tool call (arguments streamed as JSON)."""
    return Item(kind="function_call", name=name, arguments=dict(arguments), call_id=call_id)


def exec_command(cmd: str, call_id: str = "", **extra: Any) -> Item:
    """A call to Codex's PTY shell tool ``exec_command`` (``{"cmd": …}`` + extras
    such as ``yield_time_ms``)."""
    return function_call("exec_command", {"cmd": cmd, **extra}, call_id)


def apply_patch(patch: str, call_id: str = "") -> Item:
    """A call to the freeform ``apply_patch`` custom tool with ``patch`` as input."""
    return Item(kind="custom_tool_call", name="apply_patch", text=patch, call_id=call_id)


def reply(*items: Item, **options: Any) -> Reply:
    """A streamed reply made of ``items`` (``options`` are :class:`Reply` fields)."""
    return Reply(items=tuple(items), **options)


def text_reply(value: str, delay: float = 0.0, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Reply:
    """A reply with one message."""
    return reply(message(value), delay=delay, chunk_chars=chunk_chars)


def error(
    status: int, message: str | None = None, headers: Sequence[tuple[str, str]] = ()
) -> ErrorReply:
    """An HTTP error answer (401, 429, 500, ...)."""
    return ErrorReply(status=status, message=message, headers=tuple(headers))


def failed(message: str, *items: Item, code: str = "server_error") -> Reply:
    """A stream that emits ``items`` and then ``response.failed``."""
    return reply(*items, fail=message, fail_code=code)


def truncated(*items: Item, after: int | None = None) -> Reply:
    """A stream that ends without ``response.completed`` after ``after`` items (all)."""
    return reply(*items, truncate_after=len(items) if after is None else after)


def script_text(value: str = "Hello from the fake model.") -> list[Response]:
    """One text-only turn."""
    return [text_reply(value)]


def script_exec(cmd: str, final_text: str = "The command ran.") -> list[Response]:
    """An ``exec_command`` call, then ``final_text`` once its output comes back."""
    return [reply(exec_command(cmd)), text_reply(final_text)]


def always_error(status: int, message: str | None = None) -> ScriptFn:
    """A script answering every request with the same HTTP error."""
    answer = error(status, message)

    def respond(_body: dict[str, Any]) -> Response:
        return answer

    return respond


# --- reading requests ----------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` items (dicts only)."""
    items = body.get("input")
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def user_texts(body: dict[str, Any]) -> list[str]:
    """The texts of the ``user`` messages in a request, in order."""
    found: list[str] = []
    for item in input_items(body):
        if item.get("type") == "message" and item.get("role") == "user":
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    found.append(part["text"])
    return found


def assistant_texts(body: dict[str, Any]) -> list[str]:
    """The texts of earlier ``assistant`` messages the request carries (history)."""
    found: list[str] = []
    for item in input_items(body):
        if item.get("type") == "message" and item.get("role") == "assistant":
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    found.append(part["text"])
    return found


def function_outputs(body: dict[str, Any]) -> list[str]:
    """The ``output`` texts of ``function_call_output``/``custom_tool_call_output`` items."""
    found: list[str] = []
    for item in input_items(body):
        if item.get("type") in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, str):
                found.append(output)
            elif isinstance(output, list):
                found.extend(str(part.get("text", "")) for part in output if isinstance(part, dict))
    return found


# --- the server ---------------------------------------------------------------------


def _chunks(value: str, size: int) -> list[str]:
    size = max(1, size)
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def _fake_id(prefix: str) -> str:
    return f"{prefix}_fake{uuid.uuid4().hex[:20]}"


class _Handler(ScriptedApiHandler):
    """``POST /v1/responses`` streamed as SSE; every other request is a quick 404."""

    route = "/v1/responses"
    default_model = "gpt-fake"
    request_id_header = "x-request-id"
    secret_headers = SECRET_HEADERS

    def _request_id(self) -> str:
        return f"req_fake{uuid.uuid4().hex[:20]}"

    def _error_body(self, status: int, message: str) -> dict[str, Any]:
        return ErrorReply(status, message=message).body()

    def _is_error(self, response: Any) -> bool:
        return isinstance(response, ErrorReply)

    def _event(self, payload: dict[str, Any]) -> None:
        name = payload["type"]
        self._write_chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def _stream(self, answer: Reply, model: str) -> None:
        self._start_sse("text/event-stream")
        self._run_stream(_Stream(self, answer, model).run)


class _Stream:
    """The SSE events of one :class:`Reply`."""

    def __init__(self, handler: _Handler, answer: Reply, model: str) -> None:
        self.h = handler
        self.answer = answer
        self.response = {
            "id": _fake_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": model,
            "output": [],
        }

    def run(self) -> None:
        self.h._event({"type": "response.created", "response": dict(self.response)})
        self.h._event({"type": "response.in_progress", "response": dict(self.response)})
        done: list[dict[str, Any]] = []
        for index, item in enumerate(self.answer.items):
            if self.answer.truncate_after is not None and index >= self.answer.truncate_after:
                return
            done.append(self._item(index, item))
        if self.answer.truncate_after is not None:
            return
        if self.answer.fail is not None:
            failed = dict(self.response, status="failed", output=done)
            failed["error"] = {"code": self.answer.fail_code, "message": self.answer.fail}
            self.h._event({"type": "response.failed", "response": failed})
            return
        completed = dict(self.response, status="completed", output=done)
        completed["usage"] = self.answer.usage.to_json()
        self.h._event({"type": "response.completed", "response": completed})

    def _deltas(self, kind: str, item_id: str, index: int, text: str, **extra: Any) -> None:
        for part in _chunks(text, self.answer.chunk_chars):
            self.h._pause(self.answer.delay)
            self.h._event(
                {"type": kind, "item_id": item_id, "output_index": index, "delta": part, **extra}
            )

    def _item(self, index: int, item: Item) -> dict[str, Any]:
        """Stream one output item; return its final (``done``) form."""
        if item.kind == "message":
            return self._message(index, item)
        if item.kind == "reasoning":
            return self._reasoning(index, item)
        return self._function_call(index, item)

    def _added(self, index: int, item: dict[str, Any]) -> None:
        self.h._event({"type": "response.output_item.added", "output_index": index, "item": item})

    def _done(self, index: int, item: dict[str, Any]) -> dict[str, Any]:
        self.h._event({"type": "response.output_item.done", "output_index": index, "item": item})
        return item

    def _message(self, index: int, item: Item) -> dict[str, Any]:
        item_id = _fake_id("msg")
        base = {"type": "message", "id": item_id, "role": "assistant"}
        self._added(index, {**base, "status": "in_progress", "content": []})
        part = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self.h._event({"type": "response.content_part.added", **where, "part": part})
        self._deltas("response.output_text.delta", item_id, index, item.text, content_index=0)
        self.h._event({"type": "response.output_text.done", **where, "text": item.text})
        final_part = dict(part, text=item.text)
        self.h._event({"type": "response.content_part.done", **where, "part": final_part})
        return self._done(index, {**base, "status": "completed", "content": [final_part]})

    def _reasoning(self, index: int, item: Item) -> dict[str, Any]:
        item_id = _fake_id("rs")
        self._added(index, {"type": "reasoning", "id": item_id, "summary": []})
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": ""}
        self.h._event({"type": "response.reasoning_summary_part.added", **where, "part": part})
        self._deltas(
            "response.reasoning_summary_text.delta", item_id, index, item.text, summary_index=0
        )
        self.h._event({"type": "response.reasoning_summary_text.done", **where, "text": item.text})
        final_part = dict(part, text=item.text)
        self.h._event({"type": "response.reasoning_summary_part.done", **where, "part": final_part})
        final = {
            "type": "reasoning",
            "id": item_id,
            "summary": [final_part],
            "encrypted_content": None,
        }
        return self._done(index, final)

    def _function_call(self, index: int, item: Item) -> dict[str, Any]:
        """A function call (JSON arguments) or a freeform custom tool call (text input)."""
        custom = item.kind == "custom_tool_call"
        item_id = _fake_id("ctc" if custom else "fc")
        payload = item.text if custom else json.dumps(item.arguments)
        field_name, events = (
            ("input", "custom_tool_call_input")
            if custom
            else ("arguments", "function_call_arguments")
        )
        base = {
            "type": item.kind,
            "id": item_id,
            "call_id": item.call_id or _fake_id("call"),
            "name": item.name,
        }
        self._added(index, {**base, field_name: "", "status": "in_progress"})
        self._deltas(f"response.{events}.delta", item_id, index, payload)
        where = {"item_id": item_id, "output_index": index}
        self.h._event({"type": f"response.{events}.done", **where, field_name: payload})
        return self._done(index, {**base, field_name: payload, "status": "completed"})


class FakeOpenAI(FakeHTTPServer[Response]):
    """The fake Responses API: start it (or use ``with``), point Codex at ``base_url``.

    ``requests`` holds every ``POST /v1/responses`` received, in order, as dicts
    with ``method``, ``path``, ``headers`` (without credentials), ``body`` and
    ``t`` (seconds since start).
    """

    label = "fake OpenAI server"
    thread_name = "fake-openai"
    handler = _Handler

    @property
    def base_url(self) -> str:
        """The provider ``base_url`` for Codex's config (it POSTs ``base_url/responses``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def default_answer(self) -> Response:
        return text_reply(DONE_TEXT)
