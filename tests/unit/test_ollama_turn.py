"""The ollama turn through the real ollama client against the fake server:
merged messages, progress, cost, history sent back, stops and errors."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from corral.actors import convert
from corral.supervisor.providers.ollama.client import OllamaClient
from corral.supervisor.providers.ollama.history import build_messages
from corral.supervisor.providers.ollama.turn import TurnResult, run_turn
from tests.support.fake_ollama import (
    ChatReply,
    Collector,
    ErrorReply,
    FakeOllama,
    threads_stopped,
)

THINKING = "The user greets me. I should greet them back, briefly and warmly."
CONTENT = "Hello! How can I help you with your code today?"


@pytest.fixture
def fake() -> Iterator[list[FakeOllama]]:
    """Start fakes with ``fake.append(FakeOllama(...).start())``; all are closed."""
    with threads_stopped():
        started: list[FakeOllama] = []
        try:
            yield started
        finally:
            for srv in started:
                srv.close()


def _turn(
    srv: FakeOllama,
    messages: list[dict[str, Any]],
    *,
    model: str = "qwen3:8b",
    cancel: threading.Event | None = None,
    **kwargs: Any,
) -> tuple[TurnResult, Collector]:
    out = Collector()
    client = OllamaClient(srv.url)
    try:
        result = run_turn(
            client, model, messages, cancel=cancel or threading.Event(), emit=out, **kwargs
        )
    finally:
        client.close()
    return result, out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_chunks_merge_into_one_thinking_and_one_text(fake: list[FakeOllama]) -> None:
    srv = FakeOllama([ChatReply(thinking=THINKING, content=CONTENT, chunk_chars=3, delay=0.005)])
    fake.append(srv.start())
    result, out = _turn(srv, [{"role": "user", "content": "hi"}], progress_interval=0.02)

    assert result.outcome == "done"
    assert out.kinds(displayed_only=True) == ["thinking", "text"]
    (thinking,) = out.of("thinking")
    (text,) = out.of("text")
    assert thinking.text == THINKING
    assert text.text == CONTENT
    # the store keeps one message each, however many chunks there were
    stored = [
        convert.to_agent_message(n, i, 0)
        for i, n in enumerate(out.items, 1)
        if convert.is_displayed(n)
    ]
    assert [m["role"] for m in stored] == ["thinking", "assistant"]

    # progress came in batches while streaming, as pieces that add up
    partials = out.of("delta")
    assert len(partials) >= 3
    assert len(out.batches) >= 3
    for role, full in (("thinking", THINKING), ("assistant", CONTENT)):
        pieces = [n for n in partials if n.status == role and n.raw and n.raw["role"] == role]
        offsets = [n.raw["offset"] for n in pieces if n.raw]
        assert offsets == sorted(offsets) and offsets[0] == 0
        assert full.startswith("".join(n.text for n in pieces))
    assert not any(convert.is_displayed(n) for n in partials)

    (cost,) = out.of("cost")
    assert cost.cost_usd == 0.0 and cost.cost_cumulative is False
    assert cost.input_tokens == 12
    assert cost.output_tokens > 0
    assert cost.raw is not None and cost.raw["total_duration_ms"] == 1500.0
    assert cost.raw["tokens_per_second"] > 0
    assert out.items[-1].kind == "turn_end" and not out.items[-1].is_error
    assert (result.input_tokens, result.output_tokens) == (12, cost.output_tokens)
    assert result.messages == [{"role": "assistant", "content": CONTENT, "thinking": THINKING}]

    (request,) = srv.chat_requests
    body = request["body"]
    assert body["model"] == "qwen3:8b"
    assert body["stream"] is True
    assert body["think"] is True
    assert body["messages"] == [{"role": "user", "content": "hi"}]


def test_history_is_rebuilt_and_sent_back(fake: list[FakeOllama]) -> None:
    srv = FakeOllama(
        [ChatReply(thinking="2 plus 2.", content="4"), ChatReply(content="12")],
    )
    fake.append(srv.start())
    first = "What is 2+2?"
    _, out = _turn(srv, [{"role": "user", "content": first}])
    # what the session stores: the prompt, then every displayed item
    stored = [convert.user_message(first, 1, 0)]
    for n in out.items:
        if convert.is_displayed(n):
            stored.append(convert.to_agent_message(n, len(stored) + 1, 0))
    stored.append(convert.system_message("a corral note", len(stored) + 1, 0))

    messages = build_messages(stored, system_prompt="Be brief.", prompt="And times 3?")
    result, out2 = _turn(srv, messages, options={"temperature": 0, "num_ctx": 8192})

    assert result.outcome == "done"
    assert [n.text for n in out2.of("text")] == ["12"]
    second = srv.chat_requests[1]["body"]
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": first},
        {"role": "assistant", "content": "4", "thinking": "2 plus 2."},
        {"role": "user", "content": "And times 3?"},
    ]
    assert second["options"] == {"temperature": 0, "num_ctx": 8192}
    (cost,) = out2.of("cost")
    assert cost.context_window == 8192


@pytest.mark.parametrize(
    "reply",
    [
        ChatReply(content=CONTENT, chunk_chars=4, hang_after=3),
        ChatReply(content=CONTENT, headers_delay=30),
    ],
    ids=["mid-stream", "model-loading"],
)
def test_a_stop_ends_the_turn_within_a_second(fake: list[FakeOllama], reply: ChatReply) -> None:
    srv = FakeOllama([reply])
    fake.append(srv.start())
    cancel = threading.Event()
    stopped_at: list[float] = []

    def stop() -> None:
        stopped_at.append(time.monotonic())
        cancel.set()

    timer = threading.Timer(0.4, stop)
    timer.start()
    try:
        result, out = _turn(srv, [{"role": "user", "content": "hi"}], cancel=cancel)
        ended = time.monotonic()
    finally:
        timer.cancel()
        timer.join()
    assert ended - stopped_at[0] < 1.0
    assert result.outcome == "interrupted"
    last = out.items[-1]
    assert last.kind == "turn_end" and last.is_error
    assert last.text == "interrupted" and last.error_info == "cancelled"
    if reply.hang_after:
        # what was said before the stop is kept, as one message
        (text,) = out.of("text")
        assert text.text == CONTENT[:12]
    # the server saw the client hang up (a real server stops generating)
    assert srv.wait_for(lambda s: s.hangups == 1, timeout=2)


def test_a_stop_before_the_turn_sends_nothing(fake: list[FakeOllama]) -> None:
    srv = FakeOllama()
    fake.append(srv.start())
    cancel = threading.Event()
    cancel.set()
    result, out = _turn(srv, [{"role": "user", "content": "hi"}], cancel=cancel)
    assert result.outcome == "interrupted"
    assert out.kinds() == ["turn_end"]
    assert srv.requests == []


def test_an_unknown_model_says_how_to_pull_it(fake: list[FakeOllama]) -> None:
    srv = FakeOllama()
    fake.append(srv.start())
    result, out = _turn(srv, [{"role": "user", "content": "hi"}], model="nope:1b")
    assert result.outcome == "error"
    last = out.items[-1]
    assert last.kind == "turn_end" and last.is_error
    assert "`ollama pull nope:1b`" in last.text
    assert srv.url.replace("http://", "") in last.text
    assert last.error_info == "model_not_found"
    (error,) = out.of("error")
    assert convert.to_agent_message(error, 2, 0)["content"].startswith("Error: model 'nope:1b'")


def test_a_chat_404_is_the_same_clear_error(fake: list[FakeOllama]) -> None:
    srv = FakeOllama([ErrorReply(404, 'model "qwen3:8b" not found, try pulling it first')])
    fake.append(srv.start())
    result, out = _turn(srv, [{"role": "user", "content": "hi"}])
    assert result.outcome == "error"
    assert "ollama pull qwen3:8b" in out.items[-1].text
    assert out.items[-1].error_info == "model_not_found"


def test_an_unreachable_server_names_its_host() -> None:
    port = _closed_port()
    out = Collector()
    with threads_stopped():
        client = OllamaClient(f"127.0.0.1:{port}")
        try:
            result = run_turn(
                client,
                "qwen3:8b",
                [{"role": "user", "content": "hi"}],
                cancel=threading.Event(),
                emit=out,
            )
        finally:
            client.close()
    assert result.outcome == "error"
    last = out.items[-1]
    assert last.is_error and last.error_info == "network"
    assert f"http://127.0.0.1:{port}" in last.text
    assert "not reachable" in last.text


def test_an_error_mid_stream_ends_the_turn_and_keeps_the_text(fake: list[FakeOllama]) -> None:
    srv = FakeOllama([ChatReply(content="abcdefgh", chunk_chars=2, error_after=2)])
    fake.append(srv.start())
    result, out = _turn(srv, [{"role": "user", "content": "hi"}])
    assert result.outcome == "error"
    assert [n.text for n in out.of("text")] == ["abcd"]
    assert out.items[-1].text == "ollama: an error was encountered while running the model"
    assert result.messages == [{"role": "assistant", "content": "abcd"}]


def test_a_busy_server_is_overloaded(fake: list[FakeOllama]) -> None:
    srv = FakeOllama(
        [ErrorReply(503, "server busy, please try again.  maximum pending requests exceeded")]
    )
    fake.append(srv.start())
    _, out = _turn(srv, [{"role": "user", "content": "hi"}])
    assert out.items[-1].error_info == "overloaded"


@pytest.mark.parametrize(
    ("model", "think", "sent"),
    [
        ("qwen3:8b", None, True),
        ("qwen3:8b", False, False),
        ("qwen3:8b", "high", "high"),
        ("llama3.2:1b", None, None),
        ("llama3.2:1b", True, None),
        ("old:7b", None, None),
        ("old:7b", True, True),
    ],
)
def test_think_is_sent_only_to_models_that_can_think(
    fake: list[FakeOllama], model: str, think: bool | str | None, sent: bool | str | None
) -> None:
    srv = FakeOllama(
        models={
            "qwen3:8b": ["completion", "thinking"],
            "llama3.2:1b": ["completion"],
            "old:7b": None,
        }
    )
    fake.append(srv.start())
    result, _ = _turn(srv, [{"role": "user", "content": "hi"}], model=model, think=think)
    assert result.outcome == "done"
    body = srv.chat_requests[0]["body"]
    assert body.get("think") == sent
    assert ("think" in body) is (sent is not None)
