"""The ollama provider's server side: host and model resolution, the version
check, model capabilities, and cutting a stream from another thread."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from corral.protocol.errors import PROVIDER_UNAVAILABLE, ProviderUnavailable
from corral.supervisor.providers.ollama.client import (
    DEFAULT_HOST,
    DEFAULT_MODEL,
    ModelInfo,
    ModelNotFound,
    OllamaClient,
    StreamGuard,
    check_server,
    model_info,
    normalize_host,
    resolve_host,
    resolve_model,
)
from corral.supervisor.providers.ollama.turn import choose_think
from tests.support.fake_ollama import ChatReply, FakeOllama, threads_stopped


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("localhost:1234", "http://localhost:1234"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com/", "https://example.com:443"),
        ("https://example.com:8443/ollama/", "https://example.com:8443/ollama"),
        ("[::1]:5000", "http://[::1]:5000"),
        (" http://127.0.0.1:11434 ", "http://127.0.0.1:11434"),
    ],
)
def test_normalize_host(given: str, url: str) -> None:
    assert normalize_host(given) == url


def test_the_host_comes_from_settings_then_env_then_default() -> None:
    env = {"OLLAMA_HOST": "gpu-box:11434"}
    assert resolve_host("http://10.0.0.2:9999", env) == "http://10.0.0.2:9999"
    assert resolve_host(None, env) == "http://gpu-box:11434"
    assert resolve_host("", env) == "http://gpu-box:11434"
    assert resolve_host(None, {}) == DEFAULT_HOST == "http://127.0.0.1:11434"
    assert resolve_host(None, {"OLLAMA_HOST": " "}) == DEFAULT_HOST
    with pytest.raises(ProviderUnavailable) as err:
        resolve_host(1234, env)
    assert err.value.data["detail"] == "provider_settings.ollama.config.host must be a string"


def test_the_model_comes_from_the_start_then_settings_then_default() -> None:
    assert resolve_model("llama3.2:1b", "qwen3:14b") == "llama3.2:1b"
    assert resolve_model(None, "qwen3:14b") == "qwen3:14b"
    assert resolve_model("", "") == DEFAULT_MODEL == "qwen3:8b"
    assert resolve_model(None, 3) == DEFAULT_MODEL


def test_check_server_gives_the_version() -> None:
    with threads_stopped(), FakeOllama(version="0.12.6") as srv:
        assert check_server(srv.url, timeout=2) == "0.12.6"
        assert srv.requests == [{"method": "GET", "path": "/api/version", "body": None}]


def test_an_unreachable_server_is_provider_unavailable_naming_the_host() -> None:
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable) as err:
        check_server(f"127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - started < 2
    exc = err.value
    host = f"http://127.0.0.1:{port}"
    assert exc.code == PROVIDER_UNAVAILABLE
    assert host in exc.message and host in exc.data["detail"]
    assert "connection refused" in exc.data["detail"]


def test_a_silent_server_times_out_as_unavailable() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts (kernel backlog) and never answers
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable) as err:
            check_server(f"http://127.0.0.1:{port}", timeout=0.3)
        assert time.monotonic() - started < 2
    assert "timed out" in err.value.data["detail"]


def test_a_server_that_is_not_ollama_is_unavailable() -> None:
    with threads_stopped(), FakeOllama() as srv:
        srv.version = ""
        with pytest.raises(ProviderUnavailable) as err:
            check_server(srv.url)
    assert "does not answer like ollama" in err.value.message


def test_model_capabilities_come_from_show() -> None:
    models: dict[str, list[str] | None] = {
        "qwen3:8b": ["completion", "tools", "thinking"],
        "gemma3:1b": ["completion"],
        "old:7b": None,
    }
    with threads_stopped(), FakeOllama(models=models) as srv:
        url = srv.url
        client = OllamaClient(url)
        try:
            qwen = model_info(client, "qwen3:8b")
            gemma = model_info(client, "gemma3:1b")
            old = model_info(client, "old:7b")
            with pytest.raises(ModelNotFound) as err:
                model_info(client, "nope:1b")
            assert client.describe("qwen3:8b") == client.describe("qwen3:8b")
        finally:
            client.close()
        shows = [r for r in srv.requests if r["path"] == "/api/show"]
    assert (qwen.thinking, qwen.tools, qwen.context_length) == (True, True, 40960)
    assert (gemma.thinking, gemma.tools) == (False, False)
    assert (old.thinking, old.tools, old.capabilities) == (None, None, None)
    assert "`ollama pull nope:1b`" in str(err.value) and url in str(err.value)
    assert len(shows) == 5  # four above, then describe asked once
    assert shows[0]["body"] == {"model": "qwen3:8b"}


def test_choose_think() -> None:
    thinker = ModelInfo("m", frozenset({"thinking"}))
    plain = ModelInfo("m", frozenset({"completion"}))
    unknown = ModelInfo("m", None)
    assert [choose_think(t, thinker) for t in (None, True, False, "low")] == [
        True,
        True,
        False,
        "low",
    ]
    assert [choose_think(t, plain) for t in (None, True, False)] == [None, None, None]
    assert [choose_think(t, unknown) for t in (None, True, False)] == [None, True, False]


def test_a_guard_cut_from_another_thread_ends_a_blocked_read() -> None:
    with threads_stopped(), FakeOllama([ChatReply(content="x", headers_delay=30)]) as srv:
        client = OllamaClient(srv.url)
        guard = StreamGuard()
        failure: list[BaseException] = []

        def read() -> None:
            try:
                with client.guarded(guard):
                    list(client.chat("qwen3:8b", [{"role": "user", "content": "hi"}], stream=True))
            except BaseException as exc:
                failure.append(exc)

        reader = threading.Thread(target=read)
        reader.start()
        assert srv.wait_for(lambda s: len(s.chat_requests) == 1)
        started = time.monotonic()
        guard.cut()
        reader.join(2)
        client.close()
        assert not reader.is_alive()
        assert time.monotonic() - started < 1
        assert failure and isinstance(failure[0], httpx.HTTPError)
        assert srv.wait_for(lambda s: s.hangups == 1)


def test_a_guard_cut_first_shuts_a_later_connection() -> None:
    guard = StreamGuard()
    guard.cut()
    a, b = socket.socketpair()
    with a, b:
        guard.attach(a)
        assert b.recv(1) == b""  # a was shut down at once
