"""A scriptable fake Ollama server for driving corral's ollama provider.

It speaks the parts of Ollama's HTTP API the provider uses, as the real server
does: ``GET /api/version``, ``GET /api/tags``, ``POST /api/show`` (with
``capabilities``), and ``POST /api/chat`` streamed as NDJSON (thinking chunks,
content chunks, a chunk of tool calls, then a ``done`` chunk with token counts
and durations in nanoseconds). A chat for a model it does not have gets the
real server's 404 (``model "x" not found, try pulling it first``). Stdlib only;
it listens on 127.0.0.1 with an ephemeral port; every request body is recorded.

A *script* is a sequence of answers consumed one per chat request, or a
callable taking the request body and returning an answer (``None``: the
default). Once a sequence is exhausted the server answers a short "done". An
answer is a :class:`ChatReply` or an :class:`ErrorReply`.

    with FakeOllama([ChatReply(thinking="Hmm.", content="Hi!")]) as srv:
        client = OllamaClient(srv.url)
        ...
        assert srv.chat_requests[0]["body"]["messages"][-1]["content"] == "hello"

Slow answers for stop tests: ``headers_delay`` (nothing at all, as while a
model loads), ``delay`` (between chunks) and ``hang_after`` (after that many
chunks, silence until the client hangs up or the server closes).
:attr:`FakeOllama.hangups` counts the streams whose client hung up early.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from corral.actors import convert
from corral.actors.normalized import Normalized
from tests.support.fake_http import FakeHandler, FakeHTTPServer

DEFAULT_MODELS: dict[str, list[str] | None] = {
    "qwen3:8b": ["completion", "tools", "thinking"],
    "llama3.2:1b": ["completion", "tools"],
    "gemma3:1b": ["completion"],
}
"""Model name → capabilities (None: ``show`` reports none, like old servers)."""

VERSION = "0.12.6"
DONE_TEXT = "done"
DEFAULT_MAX_LIFETIME_S = 120.0


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model makes."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatReply:
    """A streamed chat answer: thinking chunks, content chunks, one chunk of tool
    calls, then the done chunk (unless it hangs or fails first)."""

    content: str = ""
    thinking: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    chunk_chars: int = 4
    delay: float = 0.0
    headers_delay: float = 0.0
    hang_after: int | None = None
    error_after: int | None = None
    error_text: str = "an error was encountered while running the model"
    prompt_eval_count: int = 12
    eval_count: int | None = None
    done_reason: str = "stop"


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error answer with Ollama's ``{"error": ...}`` body."""

    status: int
    message: str


Answer: TypeAlias = ChatReply | ErrorReply
ScriptFn: TypeAlias = Callable[[dict[str, Any]], Answer | None]
Script: TypeAlias = Sequence[Answer] | ScriptFn


def model_not_found(model: str) -> ErrorReply:
    """The real server's answer to a chat for a model it does not have."""
    return ErrorReply(404, f'model "{model}" not found, try pulling it first')


def tool_reply(name: str, /, **arguments: Any) -> ChatReply:
    """An answer that only calls one tool."""
    return ChatReply(tool_calls=(ToolCall(name, arguments),))


def _chunks(value: str, size: int) -> list[str]:
    size = max(1, size)
    return [value[i : i + size] for i in range(0, len(value), size)]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _Handler(FakeHandler):
    timeout = 30

    def do_GET(self) -> None:
        self._drain()
        path = self.path.split("?", 1)[0].rstrip("/")
        fake = self.server.fake
        fake.record({"method": "GET", "path": path, "body": None})
        if path == "/api/version":
            self._send_json(200, {"version": fake.version})
        elif path == "/api/tags":
            self._send_json(200, {"models": [fake.tag(name) for name in fake.models]})
        elif path == "":
            self._send_text(200, "Ollama is running")
        else:
            self._send_text(404, "404 page not found")

    def do_POST(self) -> None:
        raw = self._drain()
        path = self.path.split("?", 1)[0].rstrip("/")
        body = self._parse_json(raw)
        fake = self.server.fake
        fake.record({"method": "POST", "path": path, "body": body})
        if not isinstance(body, dict):
            self._send_json(400, {"error": "invalid request body"})
            return
        model = str(body.get("model", ""))
        if path == "/api/show":
            if model not in fake.models:
                self._send_json(404, {"error": f"model '{model}' not found"})
            else:
                self._send_json(200, fake.show(model))
        elif path == "/api/chat":
            answer = fake.answer(body) if model in fake.models else model_not_found(model)
            if isinstance(answer, ErrorReply):
                self._send_json(answer.status, {"error": answer.message})
            else:
                self._stream(answer, model)
        else:
            self._send_text(404, "404 page not found")

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    # ------------------------------------------------------------ streaming

    def _stream(self, answer: ChatReply, model: str) -> None:
        self.close_connection = True
        try:
            if answer.headers_delay > 0 and self._silence(answer.headers_delay):
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            if self._stream_parts(answer, model):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.server.fake.hung_up()

    def _stream_parts(self, answer: ChatReply, model: str) -> bool:
        """Write the answer's lines; False when it stopped early (hang-up, closing)."""
        parts: list[dict[str, Any]] = [
            {"role": "assistant", "content": "", "thinking": piece}
            for piece in _chunks(answer.thinking, answer.chunk_chars)
        ]
        parts += [
            {"role": "assistant", "content": piece}
            for piece in _chunks(answer.content, answer.chunk_chars)
        ]
        if answer.tool_calls:
            calls = [
                {
                    "id": f"call_{uuid.uuid4().hex[:8]}",
                    "function": {"index": i, "name": c.name, "arguments": c.arguments},
                }
                for i, c in enumerate(answer.tool_calls)
            ]
            parts.append({"role": "assistant", "content": "", "tool_calls": calls})
        for sent, message in enumerate(parts):
            if answer.error_after is not None and sent >= answer.error_after:
                self._line({"error": answer.error_text})
                return True
            if answer.hang_after is not None and sent >= answer.hang_after:
                self._silence(None)
                return False
            if answer.delay > 0 and sent > 0 and self._silence(answer.delay):
                return False
            self._line({"model": model, "created_at": _now(), "message": message, "done": False})
        if answer.hang_after is not None:
            self._silence(None)
            return False
        eval_count = answer.eval_count if answer.eval_count is not None else max(1, len(parts))
        self._line(
            {
                "model": model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": answer.done_reason,
                "total_duration": 1_500_000_000,
                "load_duration": 200_000_000,
                "prompt_eval_count": answer.prompt_eval_count,
                "prompt_eval_duration": 300_000_000,
                "eval_count": eval_count,
                "eval_duration": 1_000_000_000,
            }
        )
        return True

    def _line(self, payload: dict[str, Any]) -> None:
        self._write_chunk(json.dumps(payload).encode() + b"\n")

    def _silence(self, seconds: float | None) -> bool:
        """Send nothing for ``seconds`` (None: until the end). True when the client
        hung up meanwhile or the server is closing (the stream must end)."""
        fake = self.server.fake
        end = None if seconds is None else time.monotonic() + seconds
        conn: socket.socket = self.connection
        while end is None or time.monotonic() < end:
            if fake.closing.is_set():
                return True
            readable, _, _ = select.select([conn], [], [], 0.02)
            if readable:
                try:
                    peeked = conn.recv(1, socket.MSG_PEEK)
                except OSError:
                    peeked = b""
                if not peeked:
                    fake.hung_up()
                    return True
        return False


class FakeOllama(FakeHTTPServer[Answer]):
    """The fake server: start it (or use ``with``), point a client at :attr:`url`.

    ``requests`` holds every request received, in order, as dicts with
    ``method``, ``path`` and ``body`` (None for GET). :meth:`close` joins the
    handler threads.
    """

    label = "fake ollama server"
    thread_name = "fake-ollama"
    handler = _Handler
    join_handlers = True
    poll_interval = 0.05

    def __init__(
        self,
        script: Script | None = None,
        *,
        models: dict[str, list[str] | None] | None = None,
        version: str = VERSION,
        max_lifetime: float = DEFAULT_MAX_LIFETIME_S,
    ) -> None:
        super().__init__(script, max_lifetime=max_lifetime)
        self.models = dict(DEFAULT_MODELS if models is None else models)
        self.version = version
        self.hangups = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def default_answer(self) -> Answer:
        return ChatReply(content=DONE_TEXT)

    def hung_up(self) -> None:
        with self._lock:
            self.hangups += 1
            self._lock.notify_all()

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["path"] == "/api/chat"]

    def wait_for(self, predicate: Callable[[FakeOllama], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (checked on every request or hang-up)."""
        with self._lock:
            return self._lock.wait_for(lambda: predicate(self), timeout)

    def show(self, model: str) -> dict[str, Any]:
        arch = model.split(":", 1)[0].rstrip("0123456789.") or "llama"
        payload: dict[str, Any] = {
            "modelfile": f"FROM {model}\n",
            "parameters": "temperature 0.6",
            "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": arch, "parameter_size": "8B"},
            "model_info": {"general.architecture": arch, f"{arch}.context_length": 40960},
            "modified_at": _now(),
        }
        capabilities = self.models.get(model)
        if capabilities is not None:
            payload["capabilities"] = list(capabilities)
        return payload

    def tag(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": _now(),
            "size": 5_200_000_000,
            "digest": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
            "details": {"format": "gguf", "family": name.split(":", 1)[0]},
        }


@contextmanager
def threads_stopped(timeout: float = 3.0) -> Iterator[None]:
    """Assert that every thread started inside the block has ended ``timeout``
    seconds after it (helper threads, servers, timers)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + timeout
    while True:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    assert not extra, f"threads left running: {extra}"


class Collector:
    """An ``emit`` that keeps every batch."""

    def __init__(self) -> None:
        self.batches: list[list[Normalized]] = []

    def __call__(self, items: list[Normalized]) -> None:
        self.batches.append(list(items))

    @property
    def items(self) -> list[Normalized]:
        return [n for batch in self.batches for n in batch]

    def kinds(self, *, displayed_only: bool = False) -> list[str]:
        return [n.kind for n in self.items if not displayed_only or convert.is_displayed(n)]

    def of(self, kind: str) -> list[Normalized]:
        return [n for n in self.items if n.kind == kind]
