"""The ollama provider's server side: where the server is, whether it answers,
which model a session uses and what that model can do.

Everything goes through the official ``ollama`` client. :class:`OllamaClient`
is that client with two additions corral needs:

* a stream a stop can cut: every request opens its own connection (no
  keep-alive), a :class:`StreamGuard` bound to the requesting thread learns
  that connection's socket (httpcore's ``trace`` extension, installed by a
  request hook) and :meth:`StreamGuard.cut` shuts it down from any thread. A
  read blocked on a silent server (a model still loading) ends at once, and the
  server sees the client hang up, which stops its generation;
* a per-model cache of ``show`` (capabilities), asked once per client.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import ollama

from corral.protocol.errors import ProviderUnavailable

__all__ = [
    "CHECK_TIMEOUT_S",
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "HOST_ENV",
    "ModelInfo",
    "ModelNotFound",
    "OllamaClient",
    "StreamGuard",
    "check_server",
    "make_client",
    "model_info",
    "normalize_host",
    "pull_hint",
    "resolve_host",
    "resolve_model",
    "unreachable",
]

log = logging.getLogger("corral.providers.ollama")

DEFAULT_HOST = "http://127.0.0.1:11434"
"""The server asked when neither the settings nor ``OLLAMA_HOST`` name one."""

DEFAULT_MODEL = "qwen3:8b"
"""The model of a session that names none (and whose settings name none)."""

HOST_ENV = "OLLAMA_HOST"
DEFAULT_PORT = 11434

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 600.0
"""The longest silence a stream may keep (a large model loading included); a
stop does not wait for it (see :class:`StreamGuard`)."""

CHECK_TIMEOUT_S = 3.0
"""Default bound of :func:`check_server`."""

_TRACED = ("connection.connect_tcp.complete", "connection.start_tls.complete")


def normalize_host(host: str) -> str:
    """``host`` as a base URL with scheme and port, the way the ollama client reads it.

    ``"0.0.0.0"`` → ``"http://0.0.0.0:11434"``; ``"https://h"`` → ``"https://h:443"``;
    a path is kept (without its trailing slash).
    """
    text = host.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
        default_port = DEFAULT_PORT
    else:
        scheme = scheme.lower()
        default_port = 443 if scheme == "https" else 80
    split = urllib.parse.urlsplit(f"{scheme}://{rest}")
    hostname = split.hostname or "127.0.0.1"
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    try:
        port = split.port or default_port
    except ValueError:
        port = default_port
    path = split.path.rstrip("/")
    return f"{scheme}://{hostname}:{port}{path}"


def resolve_host(configured: object = None, env: Mapping[str, str] | None = None) -> str:
    """The server of a session, normalized (:func:`normalize_host`).

    ``configured`` is ``provider_settings.ollama.config.host`` (the operator's
    choice); else ``OLLAMA_HOST`` from ``env`` (default: the daemon's
    environment); else :data:`DEFAULT_HOST`. A configured value that is not a
    string raises ProviderUnavailable.
    """
    if configured is not None and not isinstance(configured, str):
        detail = "provider_settings.ollama.config.host must be a string"
        raise ProviderUnavailable(detail, detail=detail)
    if isinstance(configured, str) and configured.strip():
        return normalize_host(configured)
    environ = os.environ if env is None else env
    from_env = environ.get(HOST_ENV, "")
    if from_env.strip():
        return normalize_host(from_env)
    return DEFAULT_HOST


def resolve_model(requested: object = None, default_model: object = None) -> str:
    """The session's model: the start option, else the settings' ``defaultModel``,
    else :data:`DEFAULT_MODEL` (empty or non-string values are skipped)."""
    for candidate in (requested, default_model):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return DEFAULT_MODEL


def pull_hint(model: str, host: str) -> str:
    """The message for a model the server does not have."""
    return (
        f"model {model!r} is not available on the ollama server at {host}: "
        f"run `ollama pull {model}`"
    )


def unreachable(host: str, exc: BaseException | None = None) -> str:
    """The message for a server that cannot be reached (names the host and the cause)."""
    reason = _reason(exc)
    return f"the ollama server at {host} is not reachable" + (f" ({reason})" if reason else "")


def _reason(exc: BaseException | None) -> str:
    # ollama's ConnectionError hides httpx's (`from None`); the context keeps it.
    seen = 0
    while exc is not None and seen < 4:
        if isinstance(exc, httpx.TimeoutException):
            return "timed out"
        if isinstance(exc, httpx.TransportError | OSError) and not isinstance(exc, ConnectionError):
            text = str(exc).strip()
            if "refused" in text.lower():
                return "connection refused"
            return text or type(exc).__name__
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return ""


class ModelNotFound(Exception):
    """The server does not have the model (HTTP 404); the message says how to pull it."""

    def __init__(self, model: str, host: str) -> None:
        self.model = model
        self.host = host
        super().__init__(pull_hint(model, host))


@dataclass(frozen=True)
class ModelInfo:
    """What ``show`` says about a model. ``capabilities`` is None when the server
    does not report them (older servers): then nothing is assumed either way."""

    name: str
    capabilities: frozenset[str] | None
    context_length: int | None = None

    @property
    def thinking(self) -> bool | None:
        """Whether the model can think (None: unknown)."""
        return None if self.capabilities is None else "thinking" in self.capabilities

    @property
    def tools(self) -> bool | None:
        """Whether the model can call tools (None: unknown)."""
        return None if self.capabilities is None else "tools" in self.capabilities


class StreamGuard:
    """Cuts the connection of the requests made under it (see :meth:`OllamaClient.guarded`).

    Thread-safe: :meth:`cut` may come from any thread, before, during or after
    the connection is made (a connection made after a cut is shut at once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._cut = False

    @property
    def is_cut(self) -> bool:
        return self._cut

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._cut:
                self._sockets.append(sock)
                return
        _shutdown(sock)

    def cut(self) -> None:
        """Shut down every connection made under this guard (idempotent)."""
        with self._lock:
            self._cut = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket: it wakes a reader
    # blocked in recv on another thread (close() would not).
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # What httpx builds for every client (certifi, or SSL_CERT_FILE/DIR), made once:
    # loading the CA bundle costs tens of milliseconds per session otherwise.
    return httpx.create_ssl_context()


class OllamaClient(ollama.Client):
    """The official client for one server (``host``), with cuttable streams and a
    ``show`` cache. One instance per session; its requests may come from any
    thread."""

    def __init__(
        self,
        host: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float | None = READ_TIMEOUT_S,
    ) -> None:
        self.host = normalize_host(host)
        self._local = threading.local()
        self._info: dict[str, ModelInfo] = {}
        self._notes: set[str] = set()
        self._info_lock = threading.Lock()
        super().__init__(
            self.host,
            timeout=httpx.Timeout(connect_timeout, read=read_timeout),
            event_hooks={"request": [self._on_request]},
            limits=httpx.Limits(max_keepalive_connections=0),
            verify=_tls_context(),
        )

    @contextmanager
    def guarded(self, guard: StreamGuard) -> Iterator[StreamGuard]:
        """Requests this thread makes inside the block can be cut with ``guard``."""
        previous = getattr(self._local, "guard", None)
        self._local.guard = guard
        try:
            yield guard
        finally:
            self._local.guard = previous

    def _on_request(self, request: httpx.Request) -> None:
        guard = getattr(self._local, "guard", None)
        if guard is None:
            return

        def trace(name: str, info: dict[str, Any]) -> None:
            if name in _TRACED:
                stream = info.get("return_value")
                sock = stream.get_extra_info("socket") if stream is not None else None
                if isinstance(sock, socket.socket):
                    guard.attach(sock)

        request.extensions = {**request.extensions, "trace": trace}

    def describe(self, model: str) -> ModelInfo:
        """:func:`model_info`, asked once per model for this client."""
        with self._info_lock:
            cached = self._info.get(model)
        if cached is not None:
            return cached
        info = model_info(self, model)
        with self._info_lock:
            self._info[model] = info
        return info

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` is asked on this client (notes said once)."""
        with self._info_lock:
            if key in self._notes:
                return False
            self._notes.add(key)
            return True


def make_client(host: str, *, read_timeout: float | None = READ_TIMEOUT_S) -> OllamaClient:
    """A client for a session's server (see :func:`resolve_host`)."""
    return OllamaClient(host, read_timeout=read_timeout)


def check_server(host: str, timeout: float = CHECK_TIMEOUT_S) -> str:
    """The server's version (``GET /api/version``), within ``timeout`` seconds.

    Raises ProviderUnavailable naming the host (in the message and in
    ``data.detail``) when it cannot be reached or does not answer like Ollama.
    """
    url = normalize_host(host)
    client = OllamaClient(url, connect_timeout=timeout, read_timeout=timeout)
    try:
        answer = client._request_raw("GET", "/api/version").json()
    except ollama.ResponseError as exc:
        detail = f"the ollama server at {url} answered HTTP {exc.status_code}: {exc.error}"
        raise ProviderUnavailable(detail, detail=detail) from None
    except (ConnectionError, httpx.HTTPError, OSError) as exc:
        detail = unreachable(url, exc)
        raise ProviderUnavailable(detail, detail=detail) from None
    except ValueError:
        detail = f"the server at {url} does not answer like ollama (no JSON version)"
        raise ProviderUnavailable(detail, detail=detail) from None
    finally:
        client.close()
    version = answer.get("version") if isinstance(answer, dict) else None
    if not isinstance(version, str) or not version:
        detail = f"the server at {url} does not answer like ollama (no version)"
        raise ProviderUnavailable(detail, detail=detail)
    return version


def model_info(client: OllamaClient, model: str) -> ModelInfo:
    """What the server says about ``model`` (``POST /api/show``).

    Raises :class:`ModelNotFound` for a model the server does not have and
    ProviderUnavailable when the server cannot be reached. Any other refusal
    gives a ModelInfo with unknown capabilities (the chat itself will say more).
    """
    try:
        shown = client.show(model)
    except ollama.ResponseError as exc:
        if exc.status_code == 404:
            raise ModelNotFound(model, client.host) from None
        log.warning("ollama show %s at %s: %s", model, client.host, exc)
        return ModelInfo(model, None)
    except (ConnectionError, httpx.HTTPError) as exc:
        detail = unreachable(client.host, exc)
        raise ProviderUnavailable(detail, detail=detail) from None
    except ValueError as exc:  # an answer the client cannot read
        log.warning("ollama show %s at %s: %s", model, client.host, exc)
        return ModelInfo(model, None)
    caps = shown.capabilities
    capabilities = frozenset(str(c) for c in caps) if caps is not None else None
    return ModelInfo(model, capabilities, _context_length(shown.modelinfo))


def _context_length(info: Mapping[str, Any] | None) -> int | None:
    if not info:
        return None
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if isinstance(arch, str) else None
    if value is None:
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None
