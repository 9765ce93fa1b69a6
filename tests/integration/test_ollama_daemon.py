"""The ollama provider through a real daemon, against the fake Ollama server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.protocol.client import Client, Subscriber
from corral.protocol.errors import ProviderUnavailable
from tests.conftest import DaemonFactory
from tests.integration.helpers import all_messages, poll, set_setting, wait_status
from tests.support.fake_ollama import ChatReply, FakeOllama, tool_reply


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        yield server


def point_at(client: Client, url: str) -> None:
    set_setting(client, "provider_settings", json.dumps({"ollama": {"config": {"host": url}}}))


def start(client: Client, project: str, prompt: str, cwd: Path, **extra: object) -> str:
    params = {"projectId": project, "provider": "ollama", "prompt": prompt, "cwd": str(cwd)}
    params.update(extra)
    return str(client.call("agent.start", params)["sessionId"])


def test_a_turn_is_one_thinking_and_one_answer_and_a_follow_up_sends_the_history(
    client: Client, subscriber: Subscriber, fake: FakeOllama, short_tmp: Path
) -> None:
    fake._queue = [
        ChatReply(thinking="Let me think about it.", content="Hello there, friend!"),
        ChatReply(content="You said hello."),
    ]
    point_at(client, fake.url)
    sid = start(client, "o1", "hello", short_tmp, systemPrompt="Be brief.")
    assert wait_status(subscriber, sid)["status"] == "done"
    messages = all_messages(client, sid)
    roles = [m["role"] for m in messages]
    assert roles == ["user", "system", "thinking", "assistant"]
    assert messages[2]["content"] == "Let me think about it."
    assert messages[3]["content"] == "Hello there, friend!"
    session = client.call("session.get", {"projectId": "o1"})["session"]
    assert session["model"] == "qwen3:8b" and session["costUsd"] == 0
    assert session["inputTokens"] > 0 and session["outputTokens"] > 0

    client.call("agent.prompt", {"projectId": "o1", "prompt": "what did I say?"})
    assert wait_status(subscriber, sid)["status"] == "done"
    sent = fake.chat_requests[-1]["body"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."),
        ("user", "hello"),
        ("assistant", "Hello there, friend!"),
        ("user", "what did I say?"),
    ]
    assert all_messages(client, sid)[-1]["content"] == "You said hello."


def test_a_restored_session_gets_its_conversation_back_from_the_store(
    daemon_factory: DaemonFactory, fake: FakeOllama, short_tmp: Path
) -> None:
    fake._queue = [ChatReply(content="The code word is PAPAYA."), ChatReply(content="PAPAYA")]
    first = daemon_factory("r")
    with first.client() as client, Subscriber(first.events_url) as sub:
        sub.wait_connected(client)
        point_at(client, fake.url)
        sid = start(client, "o2", "remember PAPAYA", short_tmp)
        assert wait_status(sub, sid)["status"] == "done"
    first.stop()
    again = daemon_factory("r")
    with again.client() as client, Subscriber(again.events_url) as sub:
        sub.wait_connected(client)
        assert client.call("session.restore", {"projectId": "o2"})["restored"] is True
        client.call("agent.prompt", {"projectId": "o2", "prompt": "what was the word?"})
        assert wait_status(sub, sid)["status"] == "done"
    sent = fake.chat_requests[-1]["body"]["messages"]
    assert ("assistant", "The code word is PAPAYA.") in [(m["role"], m["content"]) for m in sent]
    assert sent[-1] == {"role": "user", "content": "what was the word?"}


def test_stop_cancels_the_stream_within_a_second(
    client: Client, subscriber: Subscriber, fake: FakeOllama, short_tmp: Path
) -> None:
    fake._queue = [ChatReply(content="x" * 400, hang_after=3)]
    point_at(client, fake.url)
    sid = start(client, "o3", "talk forever", short_tmp)
    poll(lambda: fake.chat_requests, timeout=10)
    time.sleep(0.3)
    began = time.monotonic()
    result = client.call("agent.stop", {"projectId": "o3"})
    assert result["status"] == "done"
    assert time.monotonic() - began < 2.0
    assert poll(lambda: fake.hangups >= 1, timeout=2)
    assert all_messages(client, sid)[-1]["content"] == "stopped"
    assert sid


def test_an_unreachable_server_is_provider_unavailable_naming_the_host(
    client: Client, short_tmp: Path
) -> None:
    url = "http://127.0.0.1:9"  # discard: nothing listens
    point_at(client, url)
    with pytest.raises(ProviderUnavailable) as info:
        start(client, "o4", "hello", short_tmp)
    assert "127.0.0.1:9" in info.value.data["detail"]
    assert client.call("session.list") == {"sessions": []}
    detail = client.call("daemon.info")["providers"]["ollama"]
    assert detail["available"] is False and "127.0.0.1:9" in detail["detail"]


def test_an_unknown_model_is_a_clear_session_error(
    client: Client, subscriber: Subscriber, fake: FakeOllama, short_tmp: Path
) -> None:
    point_at(client, fake.url)
    sid = start(client, "o5", "hello", short_tmp, model="nosuch:1b")
    status = wait_status(subscriber, sid)
    assert status["status"] == "error"
    assert "ollama pull nosuch:1b" in status["error"]


def test_the_tool_loop_reads_a_file_in_the_cwd(
    client: Client, subscriber: Subscriber, fake: FakeOllama, short_tmp: Path
) -> None:
    (short_tmp / "notes.txt").write_text("the answer is 42\n")
    fake._queue = [tool_reply("read_file", path="notes.txt"), ChatReply(content="It says 42.")]
    point_at(client, fake.url)
    sid = start(client, "o6", "read notes.txt", short_tmp, providerConfig={"tools": True})
    assert wait_status(subscriber, sid)["status"] == "done"
    messages = all_messages(client, sid)
    call = next(m for m in messages if m["role"] == "tool-call")
    result = next(m for m in messages if m["role"] == "tool-result")
    assert call["toolName"] == "Read"
    assert "the answer is 42" in result["content"]
    assert messages[-1]["content"] == "It says 42."
    tool_message = fake.chat_requests[-1]["body"]["messages"][-1]
    assert tool_message["role"] == "tool" and "the answer is 42" in tool_message["content"]


def test_a_streaming_answer_is_previewed_by_agent_delta_then_stored_whole(
    client: Client, subscriber: Subscriber, fake: FakeOllama, short_tmp: Path
) -> None:
    answer = "streaming " * 40
    fake._queue = [ChatReply(content=answer, chunk_chars=8, delay=0.02)]
    point_at(client, fake.url)
    sid = start(client, "o7", "stream please", short_tmp)
    deltas: list[dict[str, object]] = []
    while True:
        _topic, frame = subscriber.wait_for(
            lambda _t, f: (
                f["event"] in ("agent.delta", "agent.status") and f["data"].get("sessionId") == sid
            ),
            20,
        )
        if frame["event"] == "agent.status" and frame["data"]["status"] in ("done", "error"):
            break
        if frame["event"] == "agent.delta":
            deltas.append(frame["data"])
    assert len(deltas) >= 2  # progress in batches while streaming
    assert all(d["role"] == "assistant" for d in deltas)
    offsets = [d["offset"] for d in deltas]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert answer.startswith("".join(str(d["text"]) for d in deltas))
    stored = [m for m in all_messages(client, sid) if m["role"] == "assistant"]
    assert [m["content"] for m in stored] == [answer]  # one message, stored whole
    assert stored[0]["seqId"] > int(str(deltas[-1]["afterSeq"]))
