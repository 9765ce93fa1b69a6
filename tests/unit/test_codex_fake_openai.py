"""The fake Responses API server the codex tests drive the real CLI against."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest

from tests.support import fake_openai as fo


def post(
    server: fo.FakeOpenAI, body: dict[str, Any], path: str = "/v1/responses"
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Authorization": "Bearer secret", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def events(raw: bytes) -> list[dict[str, Any]]:
    found = []
    for block in raw.decode().split("\n\n"):
        lines = block.strip().splitlines()
        if not lines:
            continue
        name = lines[0].removeprefix("event: ")
        data = json.loads(lines[1].removeprefix("data: "))
        assert data["type"] == name
        found.append(data)
    return found


BODY = {"model": "gpt-5.5", "stream": True, "input": []}


def test_a_reply_streams_every_item_kind_and_completes() -> None:
    reply = fo.reply(
        fo.reasoning("think"),
        fo.message("Hello there"),
        fo.exec_command("echo hi", call_id="call_1"),
        fo.apply_patch("*** Begin Patch\n*** End Patch\n", call_id="call_2"),
        chunk_chars=4,
        usage=fo.Usage(input_tokens=100, output_tokens=20, cached_tokens=60, reasoning_tokens=5),
    )
    with fo.FakeOpenAI([reply]) as server:
        status, headers, raw = post(server, BODY)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    got = events(raw)
    types = [e["type"] for e in got]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    done = [e["item"] for e in got if e["type"] == "response.output_item.done"]
    assert [d["type"] for d in done] == [
        "reasoning",
        "message",
        "function_call",
        "custom_tool_call",
    ]
    assert done[0]["summary"] == [{"type": "summary_text", "text": "think"}]
    assert done[1]["content"][0]["text"] == "Hello there"
    assert json.loads(done[2]["arguments"]) == {"cmd": "echo hi"} and done[2]["call_id"] == "call_1"
    assert done[3]["name"] == "apply_patch" and done[3]["call_id"] == "call_2"
    deltas = [e["delta"] for e in got if e["type"] == "response.output_text.delta"]
    assert deltas == ["Hell", "o th", "ere"]
    assert any(e["type"] == "response.reasoning_summary_text.delta" for e in got)
    assert any(e["type"] == "response.function_call_arguments.delta" for e in got)
    assert any(e["type"] == "response.custom_tool_call_input.delta" for e in got)
    usage = got[-1]["response"]["usage"]
    assert usage == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 60},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 120,
    }


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (500, "server_error", None),
        (429, "requests", "rate_limit_exceeded"),
        (401, "invalid_request_error", "invalid_api_key"),
    ],
)
def test_error_statuses_have_openai_bodies(status: int, kind: str, code: str | None) -> None:
    answer = fo.error(status, "nope", headers=[("retry-after", "1")])
    with fo.FakeOpenAI([answer]) as server:
        got, headers, raw = post(server, BODY)
    assert got == status and headers["retry-after"] == "1"
    assert json.loads(raw) == {
        "error": {"message": "nope", "type": kind, "param": None, "code": code}
    }


def test_failed_and_truncated_streams() -> None:
    with fo.FakeOpenAI(
        [
            fo.failed("boom", fo.message("partial")),
            fo.truncated(fo.message("a"), fo.message("b"), after=1),
        ]
    ) as server:
        failed = events(post(server, BODY)[2])
        truncated = events(post(server, BODY)[2])
    assert failed[-1]["type"] == "response.failed"
    assert failed[-1]["response"]["error"] == {"code": "server_error", "message": "boom"}
    assert truncated[-1]["type"] == "response.output_item.done"
    assert [e["type"] for e in truncated].count("response.output_item.done") == 1
    assert not any(e["type"] == "response.completed" for e in truncated)


def test_a_slow_stream_is_slow_and_close_cuts_it() -> None:
    with fo.FakeOpenAI([fo.text_reply("abcdef", delay=0.05, chunk_chars=2)]) as server:
        started = time.monotonic()
        post(server, BODY)
        assert time.monotonic() - started >= 0.15
    server = fo.FakeOpenAI([fo.text_reply("x" * 100, delay=5, chunk_chars=1)]).start()
    result: list[bytes] = []

    def read() -> None:
        try:
            result.append(post(server, BODY)[2])
        except http.client.IncompleteRead as cut:  # the stream was cut mid-chunk
            result.append(cut.partial)

    reader = threading.Thread(target=read, daemon=True)
    started = time.monotonic()
    reader.start()
    assert server.wait_for_requests(1, timeout=5)
    server.close()
    reader.join(timeout=5)
    assert not reader.is_alive() and time.monotonic() - started < 5
    assert b"response.completed" not in result[0]


def test_requests_are_recorded_without_credentials_and_scripts_run() -> None:
    seen: list[str] = []

    def script(body: dict[str, Any]) -> fo.Response | None:
        seen.append(body["model"])
        return None  # the default answer

    with fo.FakeOpenAI(script) as server:
        post(
            server,
            dict(
                BODY,
                input=[
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                    }
                ],
            ),
        )
        assert server.wait_for_requests(1, timeout=1)
        (request,) = server.requests
        assert "authorization" not in request["headers"]
        assert fo.user_texts(request["body"]) == ["hi"]
    assert seen == ["gpt-5.5"]
    with fo.FakeOpenAI([]) as server:
        done = events(post(server, BODY)[2])
        assert done[-1]["response"]["output"][0]["content"][0]["text"] == fo.DONE_TEXT
        assert post(server, BODY, path="/v1/models")[0] == 404


def test_request_readers() -> None:
    body = {
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "a"}],
            },
            {"type": "function_call_output", "call_id": "c", "output": "out"},
            {
                "type": "custom_tool_call_output",
                "call_id": "d",
                "output": [{"type": "input_text", "text": "patched"}],
            },
            "junk",
        ]
    }
    assert fo.user_texts(body) == ["q"]
    assert fo.assistant_texts(body) == ["a"]
    assert fo.function_outputs(body) == ["out", "patched"]


def test_the_server_binds_loopback_ephemeral_only() -> None:
    with pytest.raises(ValueError):
        fo.FakeOpenAI(host="0.0.0.0")
    with pytest.raises(ValueError):
        fo.FakeOpenAI(port=8080)
    server = fo.FakeOpenAI()
    with pytest.raises(RuntimeError):
        _ = server.port
