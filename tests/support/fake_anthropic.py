"""A scriptable fake Anthropic Messages API server for driving the real Claude CLI.

It owns the wire format the Claude Code CLI expects from ``POST /v1/messages``
(streamed as server-sent events), scripted error answers, and the record of every
request it received. Stdlib only; it listens on 127.0.0.1 with an ephemeral port
and shuts itself down after a bounded lifetime.

A *script* is either a sequence of responses consumed one per request, or a
callable taking the request body and returning a response (or ``None`` for the
default). Once a sequence is exhausted the server answers a short text "done".
A response is a :class:`Reply` (content blocks streamed as SSE) or an
:class:`ErrorReply` (an HTTP error status with an Anthropic error body).

    with FakeAnthropic(script_bash("echo hi", "It printed hi.")) as srv:
        env["ANTHROPIC_BASE_URL"] = srv.base_url
        ...
        assert srv.requests[1]["body"]["messages"][-1]["content"][0]["type"] == "tool_result"
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from tests.support.fake_http import DEFAULT_MAX_LIFETIME_S as DEFAULT_MAX_LIFETIME_S
from tests.support.fake_http import FakeHTTPServer, ScriptedApiHandler

DEFAULT_CHUNK_CHARS = 16
DONE_TEXT = "done"

#: Headers never recorded (credentials).
SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})

#: Anthropic error ``type`` for each HTTP status the fake can answer with.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Block:
    """One content block of a scripted reply: text, thinking or tool_use."""

    kind: Literal["text", "thinking", "tool_use"]
    text: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    signature: str = "fake-signature"
    id: str = ""


@dataclass(frozen=True)
class Reply:
    """A successful streamed answer.

    ``delay`` is slept before each delta; ``chunk_chars`` is how many characters
    (or JSON characters for tool input) go in one delta. ``stop_reason`` defaults
    to ``tool_use`` when a tool_use block is present, else ``end_turn``. With
    ``stream_error_after`` set, an SSE ``event: error`` (overloaded) replaces the
    rest of the stream after that many blocks.
    """

    blocks: tuple[Block, ...]
    delay: float = 0.0
    chunk_chars: int = DEFAULT_CHUNK_CHARS
    stop_reason: str | None = None
    input_tokens: int = 10
    stream_error_after: int | None = None


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error answer: ``status`` with ``{"type":"error","error":{...}}``."""

    status: int
    error_type: str | None = None
    message: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> dict[str, Any]:
        """The JSON error body for this status."""
        err_type = self.error_type or ERROR_TYPES.get(self.status, "api_error")
        message = self.message or f"fake {err_type} (HTTP {self.status})"
        return {"type": "error", "error": {"type": err_type, "message": message}}


Response: TypeAlias = Reply | ErrorReply
ScriptFn: TypeAlias = Callable[[dict[str, Any]], Response | None]
Script: TypeAlias = Sequence[Response] | ScriptFn


# --- building replies and scripts -------------------------------------------------


def text(value: str) -> Block:
    """A text block."""
    return Block(kind="text", text=value)


def thinking(value: str, signature: str = "fake-signature") -> Block:
    """A thinking block (streamed as ``thinking_delta`` then ``signature_delta``)."""
    return Block(kind="thinking", text=value, signature=signature)


def tool_use(name: str, tool_input: dict[str, Any], tool_id: str | None = None) -> Block:
    """A tool_use block (input streamed as ``input_json_delta``)."""
    return Block(kind="tool_use", name=name, input=dict(tool_input), id=tool_id or "")


def bash(command: str, description: str = "Run a command") -> Block:
    """A tool_use block calling the CLI's Bash tool."""
    return tool_use("Bash", {"command": command, "description": description})


def ask_user_question(
    question: str, labels: Sequence[str], header: str = "Choice", multi_select: bool = False
) -> Block:
    """A tool_use block calling the CLI's AskUserQuestion tool with one question
    whose options are ``labels`` (the CLI wants 2 to 4)."""
    options = [{"label": label, "description": f"choose {label}"} for label in labels]
    question_input = {
        "question": question,
        "header": header,
        "options": options,
        "multiSelect": multi_select,
    }
    return tool_use("AskUserQuestion", {"questions": [question_input]})


def reply(*blocks: Block, delay: float = 0.0, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> Reply:
    """A streamed reply made of ``blocks``."""
    return Reply(blocks=tuple(blocks), delay=delay, chunk_chars=chunk_chars)


def text_reply(value: str, delay: float = 0.0) -> Reply:
    """A reply with one text block."""
    return reply(text(value), delay=delay)


def error(status: int, message: str | None = None) -> ErrorReply:
    """An HTTP error answer (401, 429, 500, 529, ...)."""
    return ErrorReply(status=status, message=message)


def script_text(value: str = "Hello from the fake model.") -> list[Response]:
    """One text-only turn."""
    return [text_reply(value)]


def script_bash(command: str, final_text: str = "The command ran.") -> list[Response]:
    """A Bash tool call, then ``final_text`` once the tool_result comes back."""
    return [reply(text("I'll run the command."), bash(command)), text_reply(final_text)]


def script_slow_tool(seconds: float = 30, final_text: str = "Finished waiting.") -> list[Response]:
    """A Bash ``sleep`` that keeps the CLI busy in a tool for ``seconds``.

    The command is ``echo started; sleep N; echo finished``: the CLI refuses a
    command that *starts* with ``sleep N`` for N >= 25 ("Blocked: standalone
    sleep ..." / "sleep N followed by: ...") without running it.
    """
    return script_bash(f"echo started; sleep {seconds:g}; echo finished", final_text)


def script_question(
    question: str, labels: Sequence[str], final_text: str = "Thanks for answering."
) -> list[Response]:
    """An AskUserQuestion call, then ``final_text`` once the answer comes back."""
    return [
        reply(text("I have a question."), ask_user_question(question, labels)),
        text_reply(final_text),
    ]


def always_error(status: int, message: str | None = None) -> ScriptFn:
    """A script answering every request with the same HTTP error."""
    answer = error(status, message)

    def respond(_body: dict[str, Any]) -> Response:
        return answer

    return respond


# --- reading requests ----------------------------------------------------------------


def message_texts(body: dict[str, Any]) -> list[str]:
    """Every text in a request's ``messages``: text blocks and tool_result contents."""
    found: list[str] = []

    def walk(content: Any) -> None:
        if isinstance(content, str):
            found.append(content)
        elif isinstance(content, list):
            for item in content:
                walk(item)
        elif isinstance(content, dict):
            if content.get("type") == "text":
                found.append(str(content.get("text", "")))
            elif content.get("type") == "tool_result":
                walk(content.get("content"))

    for message in body.get("messages", []):
        if isinstance(message, dict):
            walk(message.get("content"))
    return found


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``tool_result`` block in a request's ``messages``, oldest first."""
    found: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                found.append(block)
    return found


# --- the server ---------------------------------------------------------------------


def _chunks(value: str, size: int) -> list[str]:
    size = max(1, size)
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


class _Handler(ScriptedApiHandler):
    """``POST /v1/messages`` streamed as SSE; every other request is a quick 404."""

    route = "/v1/messages"
    default_model = "claude-fake"
    request_id_header = "request-id"
    secret_headers = SECRET_HEADERS

    def _request_id(self) -> str:
        return f"req_fake_{uuid.uuid4().hex[:20]}"

    def _reason(self, status: int) -> str | None:
        return "Overloaded" if status == 529 else None

    def _error_body(self, status: int, message: str) -> dict[str, Any]:
        return ErrorReply(status, message=message).body()

    def _is_error(self, response: Any) -> bool:
        return isinstance(response, ErrorReply)

    def _event(self, name: str, payload: dict[str, Any]) -> None:
        self._write_chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

    def _stream(self, answer: Reply, model: str) -> None:
        self._start_sse("text/event-stream; charset=utf-8")
        self._run_stream(lambda: self._stream_events(answer, model))

    def _stream_events(self, answer: Reply, model: str) -> None:
        output_tokens = 0
        self._event(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_fake_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": answer.input_tokens,
                        "output_tokens": 1,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                    },
                },
            },
        )
        self._event("ping", {"type": "ping"})
        for index, block in enumerate(answer.blocks):
            if answer.stream_error_after is not None and index >= answer.stream_error_after:
                overloaded = {"type": "overloaded_error", "message": "Overloaded"}
                self._event("error", {"type": "error", "error": overloaded})
                return
            output_tokens += self._stream_block(index, block, answer)
        stop_reason = answer.stop_reason or (
            "tool_use" if any(b.kind == "tool_use" for b in answer.blocks) else "end_turn"
        )
        self._event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": max(1, output_tokens)},
            },
        )
        self._event("message_stop", {"type": "message_stop"})

    def _stream_block(self, index: int, block: Block, answer: Reply) -> int:
        """Stream one content block; return a rough output-token count."""
        if block.kind == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
        elif block.kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            tool_id = block.id or f"toolu_fake_{uuid.uuid4().hex[:20]}"
            start = {"type": "tool_use", "id": tool_id, "name": block.name, "input": {}}
        self._event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": start},
        )
        if block.kind == "tool_use":
            payload = json.dumps(block.input)
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in _chunks(payload, answer.chunk_chars)
            ]
        elif block.kind == "thinking":
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in _chunks(block.text, answer.chunk_chars)
            ]
            deltas.append({"type": "signature_delta", "signature": block.signature})
        else:
            deltas = [
                {"type": "text_delta", "text": p} for p in _chunks(block.text, answer.chunk_chars)
            ]
        for delta in deltas:
            self._pause(answer.delay)
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        return len(deltas)


class FakeAnthropic(FakeHTTPServer[Response]):
    """The fake Messages API: start it (or use ``with``), point the CLI at ``base_url``.

    ``requests`` holds every ``POST /v1/messages`` received, in order, as dicts
    with ``method``, ``path``, ``headers`` (without credentials) and ``body``.
    """

    label = "fake Anthropic server"
    thread_name = "fake-anthropic"
    handler = _Handler

    @property
    def base_url(self) -> str:
        """The value for ``ANTHROPIC_BASE_URL``."""
        return f"http://127.0.0.1:{self.port}"

    def default_answer(self) -> Response:
        return text_reply(DONE_TEXT)
