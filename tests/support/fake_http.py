"""The HTTP scaffolding shared by the fake model servers (OpenAI, Anthropic, Ollama).

:class:`FakeHTTPServer` owns what every fake does the same way: binding
127.0.0.1 on an ephemeral port, serving each connection on its own thread,
the bounded lifetime (a timer closes the server), the script (a sequence of
answers consumed one per request, or a callable of the request body), the
record of requests and waiting for it to grow. :class:`FakeHandler` owns the
request plumbing (reading the body, JSON parsing, chunked writes) and
:class:`ScriptedApiHandler` the single-route ``POST``-and-stream handler of
the OpenAI and Anthropic fakes. Each fake module keeps its own wire format.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, Self, TypeVar

A = TypeVar("A")

#: How long a fake serves before it closes itself, unless told otherwise.
DEFAULT_MAX_LIFETIME_S = 300.0


class FakeHandler(BaseHTTPRequestHandler):
    """Request plumbing common to the fakes' handlers (quiet, keep-alive HTTP/1.1)."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are dropped after this
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _parse_json(raw: bytes) -> Any:
        """The JSON value of a request body (``{}`` when empty, None when not JSON)."""
        try:
            return json.loads(raw.decode("utf-8")) if raw else {}
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


class ScriptedApiHandler(FakeHandler):
    """One ``POST`` route answered from the script; every other request is a 404.

    Subclasses set :attr:`route` and the request-id header, and implement
    :meth:`_error_body` (the API's error JSON), :meth:`_is_error` and
    :meth:`_stream` (a successful streamed answer).
    """

    route: ClassVar[str] = ""
    default_model: ClassVar[str] = ""
    request_id_header: ClassVar[str] = "x-request-id"
    secret_headers: ClassVar[frozenset[str]] = frozenset()

    def do_GET(self) -> None:
        self._drain()
        self._not_found()

    do_PUT = do_GET
    do_DELETE = do_GET
    do_PATCH = do_GET

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        raw = self._drain()
        if self.path.split("?", 1)[0].rstrip("/") != self.route:
            self._not_found()
            return
        body = self._parse_json(raw)
        if not isinstance(body, dict):
            self._send_json(400, self._error_body(400, "request body is not a JSON object"))
            return
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in self.secret_headers
        }
        response = self.server.fake.record_and_answer(
            {"method": "POST", "path": self.path, "headers": headers, "body": body}
        )
        if self._is_error(response):
            self._send_json(response.status, response.body(), response.headers)
        else:
            self._stream(response, str(body.get("model", self.default_model)))

    def _request_id(self) -> str:
        raise NotImplementedError

    def _reason(self, status: int) -> str | None:
        """The status line's reason phrase (None: the standard one)."""
        return None

    def _error_body(self, status: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def _is_error(self, response: Any) -> bool:
        raise NotImplementedError

    def _stream(self, answer: Any, model: str) -> None:
        raise NotImplementedError

    def _send_json(
        self, status: int, payload: dict[str, Any], extra: Sequence[tuple[str, str]] = ()
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status, self._reason(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(self.request_id_header, self._request_id())
        for key, value in extra:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        self._send_json(404, self._error_body(404, f"no route for {self.path}"))

    def _start_sse(self, content_type: str) -> None:
        """Send the headers of a chunked server-sent-events answer."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header(self.request_id_header, self._request_id())
        self.end_headers()

    def _pause(self, delay: float) -> None:
        """Sleep ``delay`` before a delta; abort the stream if the server closes."""
        if delay > 0 and self.server.fake.closing.wait(delay):
            raise ConnectionAbortedError("fake server closing")

    def _run_stream(self, write_events: Callable[[], None]) -> None:
        """Write the events, then the last chunk; a client hang-up ends the connection."""
        try:
            write_events()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    fake: Any


class FakeHTTPServer(Generic[A]):
    """A started-on-demand local server answering from a script (use ``with``).

    Subclasses set :attr:`label` (for messages), :attr:`thread_name`, :attr:`handler` and
    :attr:`join_handlers` (True: :meth:`close` waits for handler threads), and
    implement :meth:`default_answer` (what a request gets once the script has
    nothing). ``requests`` holds every recorded request in order.
    """

    label: ClassVar[str] = "fake server"
    thread_name: ClassVar[str] = "fake-http"
    handler: ClassVar[type[FakeHandler]] = FakeHandler
    join_handlers: ClassVar[bool] = False
    poll_interval: ClassVar[float] = 0.1

    def __init__(
        self,
        script: Sequence[A] | Callable[[dict[str, Any]], A | None] | None = None,
        *,
        max_lifetime: float = DEFAULT_MAX_LIFETIME_S,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host != "127.0.0.1":
            raise ValueError(f"the {self.label} binds 127.0.0.1 only, not {host!r}")
        if port != 0:
            raise ValueError(f"the {self.label} binds an ephemeral port only, not {port}")
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be positive")
        self._script_fn: Callable[[dict[str, Any]], A | None] | None = None
        self._queue: list[A] = []
        if callable(script):
            self._script_fn = script
        elif script is not None:
            self._queue = list(script)
        self.max_lifetime = max_lifetime
        self.requests: list[dict[str, Any]] = []
        self.closing = threading.Event()
        self._lock = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._started_at = 0.0

    # lifecycle

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), self.handler)
        server.daemon_threads = not self.join_handlers
        server.block_on_close = self.join_handlers
        server.fake = self
        self._server = server
        self._started_at = time.monotonic()
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": self.poll_interval},
            name=self.thread_name,
            daemon=True,
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()
        return self

    def close(self) -> None:
        """Stop serving (idempotent); in-flight slow streams are cut off (and
        their handler threads joined when :attr:`join_handlers`)."""
        self.closing.set()
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        """Whether the server is still accepting requests."""
        return self._server is not None and not self.closing.is_set()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError(f"the {self.label} is not running")
        return int(self._server.server_address[1])

    # scripting and records

    def default_answer(self) -> A:
        """The answer once the script has none (a short "done")."""
        raise NotImplementedError

    def push(self, *answers: A) -> None:
        """Append answers to a sequence script."""
        with self._lock:
            self._queue.extend(answers)

    def record(self, request: dict[str, Any]) -> None:
        """Append one request to :attr:`requests` and wake the waiters."""
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def answer(self, body: dict[str, Any]) -> A:
        """The scripted answer to a request body (the default once there is none)."""
        found: A | None = None
        if self._script_fn is not None:
            found = self._script_fn(body)
        else:
            with self._lock:
                if self._queue:
                    found = self._queue.pop(0)
        return found if found is not None else self.default_answer()

    def record_and_answer(self, request: dict[str, Any]) -> A:
        """Record one request (stamped with ``t``, seconds since start) and answer it."""
        found: A | None = None
        with self._lock:
            request["t"] = round(time.monotonic() - self._started_at, 3)
            self.requests.append(request)
            self._lock.notify_all()
            if self._script_fn is None and self._queue:
                found = self._queue.pop(0)
        if self._script_fn is not None:
            found = self._script_fn(request["body"])
        return found if found is not None else self.default_answer()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` requests arrived; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= count, timeout)
