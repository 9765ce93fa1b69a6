"""Tests of the built-in mock agent: run it as a subprocess, parse it as Claude stream-json."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from corral.actors.normalized import Normalized
from corral.protocol.errors import InvalidParams
from corral.protocol.schema import validate as schema_validate
from corral.supervisor.providers.claude.stream import (
    ClaudeStreamParser,
    encode_interrupt,
    encode_user_message,
)
from corral.supervisor.providers.mock.config import (
    DEFAULTS,
    MockConfigError,
    config_schema,
    validate_config,
)

REPO = Path(__file__).resolve().parents[2]
FAST = {"delayMs": 0}
TIMEOUT = 10.0

DEFAULT_KINDS = [
    "init",
    "thinking",
    "text",
    "tool_call",
    "tool_result",
    "tool_call",
    "tool_result",
    "text",
    "cost",
    "turn_end",
]


def command(*args: str, config: dict[str, Any] | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "corral.supervisor.providers.mock", *args]
    if config is not None:
        cmd += ["--config", json.dumps(config)]
    return cmd


def run(
    prompts: list[str], *args: str, config: dict[str, Any] | None = None
) -> tuple[int, list[bytes], str]:
    """Send all prompts, close stdin, wait; returns (rc, stdout lines, stderr)."""
    proc = subprocess.Popen(
        command(*args, config=config),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdin = b"".join(encode_user_message(p) for p in prompts)
        out, err = proc.communicate(stdin, timeout=TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, out.splitlines(), err.decode()


def parse(lines: list[bytes]) -> list[Normalized]:
    parser = ClaudeStreamParser()
    return [n for line in lines for n in parser.feed_line(line)]


def kinds(values: list[Normalized]) -> list[str]:
    return [n.kind for n in values]


class Live:
    """An interactive mock agent; always stopped by the test that made it."""

    def __init__(self, *args: str, config: dict[str, Any] | None = None) -> None:
        self.proc = subprocess.Popen(
            command(*args, config=config),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.parser = ClaudeStreamParser()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read_until(self, kind: str, timeout: float = TIMEOUT) -> list[Normalized]:
        """Parsed values up to and including the first of ``kind``."""
        deadline = time.monotonic() + timeout
        out: list[Normalized] = []
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"stdout closed before {kind}: {kinds(out)}"
            values = self.parser.feed_line(line)
            out.extend(values)
            if any(v.kind == kind for v in values):
                return out

    def read_json_until(self, kind: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """Raw JSON lines up to and including the first of ``type`` ``kind``."""
        deadline = time.monotonic() + timeout
        out: list[dict[str, Any]] = []
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, f"stdout closed before {kind}"
            out.append(json.loads(line))
            if out[-1].get("type") == kind:
                return out

    def quiet_for(self, seconds: float) -> bool:
        try:
            self.lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- output shape ----------------------------------------------------------


def test_default_run() -> None:
    rc, lines, err = run(["Fix the login bug"], "--cwd", "/srv/project")
    assert rc == 0, err
    values = parse(lines)
    assert kinds(values) == DEFAULT_KINDS
    init, thinking, text, call1, result1, call2, result2, final, cost, end = values
    assert init.model == "mock-1" and init.cwd == "/srv/project"
    assert init.provider_session_id and len(init.provider_session_id) == 36
    assert "Fix the login bug" in thinking.text
    for value in (text, final):
        assert len(value.text.encode()) == 200
        assert "Fix the login bug" in value.text and "turn 1" in value.text
    assert call1.tool_name != call2.tool_name
    for call, result in ((call1, result1), (call2, result2)):
        assert call.tool_id and call.tool_id == result.tool_id
        assert call.tool_input and result.text and not result.is_error
    assert call1.tool_input is not None
    assert str(call1.tool_input.get("file_path", "")).startswith("/srv/project/")
    assert cost.cost_usd is not None and cost.cost_usd > 0
    assert cost.input_tokens > 0 and cost.output_tokens > 0
    assert end.is_error is False


def test_message_ids_like_the_cli() -> None:
    rc, lines, _ = run(["hello"], config=FAST)
    assert rc == 0
    objs = [json.loads(line) for line in lines]
    assistant_ids = [o["message"]["id"] for o in objs if o["type"] == "assistant"]
    # thinking, text and the first tool_use share one message; each tool result starts a new one
    assert assistant_ids[0] == assistant_ids[1] == assistant_ids[2]
    assert len(set(assistant_ids)) == 3
    result = objs[-1]
    assert result["type"] == "result" and result["subtype"] == "success"
    assert result["num_turns"] == 3 and result["session_id"] == objs[0]["session_id"]
    assert set(result["usage"]) >= {
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    }


def test_deterministic_texts() -> None:
    first = [n.text for n in parse(run(["same prompt"], config=FAST)[1])]
    second = [n.text for n in parse(run(["same prompt"], config=FAST)[1])]
    assert first == second


def test_turns_tool_calls_and_text_bytes() -> None:
    config = {"delayMs": 0, "turns": 2, "toolCalls": 1, "textBytes": 57}
    rc, lines, _ = run(["refactor"], config=config)
    assert rc == 0
    values = parse(lines)
    step = ["thinking", "text", "tool_call", "tool_result"]
    assert kinds(values) == ["init", *step, *step, "text", "cost", "turn_end"]
    assert {len(n.text.encode()) for n in values if n.kind == "text"} == {57}

    rc, lines, _ = run(["no tools"], config={"delayMs": 0, "toolCalls": 0, "textBytes": 1})
    assert rc == 0
    values = parse(lines)
    assert kinds(values) == ["init", "thinking", "text", "text", "cost", "turn_end"]
    assert [len(n.text) for n in values if n.kind == "text"] == [1, 1]


def test_tool_calls_vary() -> None:
    rc, lines, _ = run(["inspect everything"], config={"delayMs": 0, "toolCalls": 5})
    assert rc == 0
    names = [n.tool_name for n in parse(lines) if n.kind == "tool_call"]
    assert len(names) == 5 and len(set(names)) == 5


def test_fail_after() -> None:
    rc, lines, err = run(["x"], config={"delayMs": 0, "failAfter": 3})
    assert rc == 1
    assert len(lines) == 3
    assert err.count("\n") == 1 and "failAfter" in err
    assert "turn_end" not in kinds(parse(lines))


def test_fail_after_zero_prints_nothing() -> None:
    rc, lines, err = run(["x"], config={"failAfter": 0})
    assert rc == 1 and lines == [] and err.strip()


def test_flood() -> None:
    rc, lines, _ = run(["go"], config={"delayMs": 0, "flood": 5})
    assert rc == 0
    got = kinds(parse(lines))
    assert got == ["init", "text", "text", "text", "text", "text", *DEFAULT_KINDS[1:]]


def test_follow_up_prompts_and_cumulative_cost() -> None:
    rc, lines, _ = run(["first", "second"], config=FAST)
    assert rc == 0
    values = parse(lines)
    assert kinds(values) == DEFAULT_KINDS + DEFAULT_KINDS
    costs = [n.cost_usd for n in values if n.kind == "cost"]
    assert costs[0] is not None and costs[1] is not None
    assert costs[1] == pytest.approx(2 * costs[0])
    finals = [n.text for n in values if n.kind == "text"]
    assert "turn 2" in finals[-1] and "second" in finals[-1]
    ids = {n.provider_session_id for n in values if n.kind == "init"}
    assert len(ids) == 1


def test_resume_continues_cost(tmp_path: Path) -> None:
    sid = "11111111-2222-4333-8444-555555555555"
    state = ["--state-dir", str(tmp_path)]
    rc, lines, _ = run(["remember PAPAYA"], "--session-id", sid, *state, config=FAST)
    assert rc == 0
    first = parse(lines)
    assert (tmp_path / f"{sid}.json").is_file()

    rc, lines, _ = run(["what was the word?"], "--resume", sid, *state, config=FAST)
    assert rc == 0
    second = parse(lines)
    assert second[0].provider_session_id == sid
    cost1 = next(n.cost_usd for n in first if n.kind == "cost")
    cost2 = next(n.cost_usd for n in second if n.kind == "cost")
    assert cost1 is not None and cost2 is not None and cost2 > cost1
    assert "turn 2" in [n.text for n in second if n.kind == "text"][-1]
    saved = json.loads((tmp_path / f"{sid}.json").read_text())
    assert saved["prompts"] == ["remember PAPAYA", "what was the word?"]
    assert saved["total_cost_usd"] == pytest.approx(cost2)


def test_resume_unknown(tmp_path: Path) -> None:
    sid = "99999999-2222-4333-8444-555555555555"
    rc, lines, err = run(["x"], "--resume", sid, "--state-dir", str(tmp_path))
    assert rc == 1
    assert len(lines) == 1
    line = json.loads(lines[0])
    expected = f"No conversation found with session ID: {sid}"
    assert line["type"] == "result" and line["subtype"] == "error_during_execution"
    assert line["is_error"] is True and line["errors"] == [expected]
    assert err.strip() == expected
    values = parse(lines)
    assert kinds(values) == ["cost", "error", "turn_end"]
    assert values[-1].is_error and values[-1].text == expected


def test_bad_config_is_refused() -> None:
    rc, lines, err = run(["x"], config={"turns": 0})
    assert rc == 2 and lines == [] and "turns" in err


# -- interactive -----------------------------------------------------------


def test_hang_until_interrupt_then_next_prompt() -> None:
    with Live(config={"delayMs": 0, "hang": True}) as agent:
        agent.send(encode_user_message("wait forever"))
        assert kinds(agent.read_until("init")) == ["init"]
        assert agent.quiet_for(0.3)
        agent.send(encode_interrupt("r1"))
        values = agent.read_until("turn_end")
        assert kinds(values) == ["status", "system", "cost", "error", "turn_end"]
        assert values[0].status == "control_response" and values[0].text == "r1"
        assert values[1].text == "[Request interrupted by user]"
        assert values[-1].is_error is True
        agent.send(encode_user_message("again"))
        assert kinds(agent.read_until("init")) == ["init"]
        assert agent.proc.poll() is None


def test_interrupt_during_tool_call() -> None:
    with Live(config={"delayMs": 300}) as agent:
        agent.send(encode_user_message("slow"))
        values = agent.read_until("tool_call")
        call = values[-1]
        agent.send(encode_interrupt("r2"))
        values = agent.read_until("turn_end")
        assert kinds(values) == ["status", "tool_result", "system", "cost", "error", "turn_end"]
        assert values[1].is_error and values[1].tool_id == call.tool_id
        assert values[2].text == "[Request interrupted by user for tool use]"


def test_prompts_during_a_turn_are_queued_and_eof_finishes_them() -> None:
    with Live(config={"delayMs": 20}) as agent:
        agent.send(encode_user_message("one"))
        agent.read_until("thinking")
        agent.send(encode_user_message("two"))
        assert agent.proc.stdin is not None
        agent.proc.stdin.close()
        first = agent.read_until("turn_end")
        second = agent.read_until("turn_end")
        assert kinds(first)[-8:] == DEFAULT_KINDS[2:]
        assert kinds(second) == DEFAULT_KINDS
        assert agent.proc.wait(timeout=TIMEOUT) == 0


def test_sigint_ends_turn_and_exits_zero() -> None:
    with Live(config={"hang": True}) as agent:
        agent.send(encode_user_message("hang"))
        agent.read_until("init")
        agent.proc.send_signal(signal.SIGINT)
        values = agent.read_until("turn_end")
        assert kinds(values) == ["system", "cost", "error", "turn_end"]
        assert agent.proc.wait(timeout=TIMEOUT) == 0


def test_sigterm_exits_143() -> None:
    with Live(config={"hang": True}) as agent:
        agent.send(encode_user_message("hang"))
        agent.read_until("init")
        agent.proc.send_signal(signal.SIGTERM)
        assert agent.proc.wait(timeout=TIMEOUT) == 143
        assert agent.lines.get(timeout=TIMEOUT) is None


# -- validate_config -------------------------------------------------------


def test_validate_config_defaults() -> None:
    expected = {
        "turns": 1,
        "toolCalls": 2,
        "delayMs": 50,
        "textBytes": 200,
        "hang": False,
        "failAfter": None,
        "flood": 0,
        "tools": None,
        "usage": None,
    }
    assert validate_config({}) == expected
    assert validate_config(None) == expected
    assert expected == DEFAULTS


def test_validate_config_accepts_valid_values() -> None:
    config = {
        "turns": 3,
        "toolCalls": 0,
        "delayMs": 0,
        "textBytes": 1,
        "hang": True,
        "failAfter": 0,
        "flood": 10,
        "tools": None,
        "usage": None,
    }
    assert validate_config(config) == config


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"turns": 0}, "turns"),
        ({"turns": True}, "turns"),
        ({"turns": 1.0}, "turns"),
        ({"turns": "1"}, "turns"),
        ({"toolCalls": -1}, "toolCalls"),
        ({"delayMs": -5}, "delayMs"),
        ({"delayMs": False}, "delayMs"),
        ({"textBytes": 0}, "textBytes"),
        ({"hang": 1}, "hang"),
        ({"hang": "yes"}, "hang"),
        ({"failAfter": -1}, "failAfter"),
        ({"failAfter": True}, "failAfter"),
        ({"flood": -1}, "flood"),
        ({"flood": None}, "flood"),
        ({"bogus": 1}, "bogus"),
        ({"turns": 2, "Turns": 2}, "Turns"),
    ],
)
def test_validate_config_rejects(config: dict[str, Any], field: str) -> None:
    with pytest.raises(MockConfigError) as info:
        validate_config(config)
    assert info.value.field == field
    assert info.value.message
    assert isinstance(info.value, ValueError)


def test_validate_config_rejects_non_objects() -> None:
    bad_values: list[object] = [[], "x", 3]
    for bad in bad_values:
        with pytest.raises(MockConfigError) as info:
            validate_config(bad)
        assert info.value.field == "providerConfig"


# -- scripted tool calls, usage and permission prompts --------------------------

SCRIPTED = [
    {"name": "Write", "input": {"file_path": "src/app.py", "content": "x = 1"}},
    {"name": "Bash", "input": {"command": "echo x > notes.md"}, "output": "done", "isError": True},
    {"name": "Edit", "input": {"file_path": "./src/../src/app.py"}, "output": "edited"},
]


def answer(request_id: str, response: dict[str, Any]) -> bytes:
    line = {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": response},
    }
    return (json.dumps(line) + "\n").encode()


def test_tools_make_exactly_these_calls() -> None:
    config = {"delayMs": 0, "toolCalls": 5, "turns": 2, "tools": SCRIPTED}
    rc, lines, err = run(["go"], config=config)
    assert rc == 0, err
    values = parse(lines)
    step = ["thinking", "text"] + ["tool_call", "tool_result"] * 3
    assert kinds(values) == ["init", *step, *step, "text", "cost", "turn_end"]
    calls = [v for v in values if v.kind == "tool_call"]
    results = [v for v in values if v.kind == "tool_result"]
    assert [(c.tool_name, c.tool_input) for c in calls] == [
        (e["name"], e["input"]) for e in SCRIPTED
    ] * 2
    assert [r.tool_id for r in results] == [c.tool_id for c in calls]
    assert len({c.tool_id for c in calls}) == 6
    assert [(r.text, r.is_error) for r in results[:3]] == [
        ("ok", False),
        ("done", True),
        ("edited", False),
    ]
    assert "6 tool call(s)" in values[-3].text
    objs = [json.loads(line) for line in lines]
    assert not any(o["type"] == "control_request" for o in objs)  # no ask: nothing asked


def test_empty_tools_list_means_no_calls() -> None:
    rc, lines, _ = run(["go"], config={"delayMs": 0, "tools": []})
    assert rc == 0
    assert kinds(parse(lines)) == ["init", "thinking", "text", "text", "cost", "turn_end"]


def test_usage_is_what_the_result_reports() -> None:
    usage = {"input_tokens": 185_000, "cache_read_input_tokens": 7}
    rc, lines, _ = run(["a", "b"], config={"delayMs": 0, "usage": usage})
    assert rc == 0
    results = [json.loads(line) for line in lines if json.loads(line)["type"] == "result"]
    assert len(results) == 2
    for result in results:
        assert result["usage"]["input_tokens"] == 185_000
        assert result["usage"]["cache_read_input_tokens"] == 7
        assert result["usage"]["output_tokens"] > 0  # a missing key keeps its simulated value
        assert result["modelUsage"]["mock-1"]["inputTokens"] == 185_000
    costs = [v for v in parse(lines) if v.kind == "cost"]
    assert [(c.input_tokens, c.cache_read_tokens) for c in costs] == [(185_000, 7)] * 2
    assert costs[0].cache_creation_tokens == 100  # the first turn's simulated value


def test_tool_hang_until_interrupt() -> None:
    tools = [{"name": "Bash", "input": {"command": "sleep 1000"}, "hang": True}, SCRIPTED[0]]
    with Live(config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("hang in a tool"))
        call = agent.read_until("tool_call")[-1]
        assert call.tool_name == "Bash"
        assert agent.quiet_for(0.3)
        agent.send(encode_interrupt("r9"))
        values = agent.read_until("turn_end")
        assert kinds(values) == ["status", "tool_result", "system", "cost", "error", "turn_end"]
        assert values[1].tool_id == call.tool_id and values[1].is_error


def test_ask_allow_runs_the_call() -> None:
    tools = [
        {"name": "Bash", "input": {"command": "echo hi > out.txt"}, "ask": True, "output": "ran"}
    ]
    config = {"delayMs": 0, "tools": tools}
    with Live("--permission-mode", "default", config=config) as agent:
        agent.send(encode_user_message("ask me"))
        lines = agent.read_json_until("control_request")
        init = lines[0]
        assert init["subtype"] == "init" and init["permissionMode"] == "default"
        tool_use = lines[-2]["message"]["content"][0]
        assert tool_use["type"] == "tool_use"
        request = lines[-1]
        assert set(request) == {"type", "request_id", "request"}
        assert request["request"] == {
            "subtype": "can_use_tool",
            "tool_name": "Bash",
            "input": {"command": "echo hi > out.txt"},
            "permission_suggestions": [
                {
                    "type": "addRules",
                    "rules": [{"toolName": "Bash", "ruleContent": "echo hi > out.txt"}],
                    "behavior": "allow",
                    "destination": "localSettings",
                }
            ],
            "tool_use_id": tool_use["id"],
        }
        assert agent.quiet_for(0.3)  # it waits for the answer
        agent.send(answer("someone-else", {"behavior": "deny", "message": "not this one"}))
        assert agent.quiet_for(0.2)  # an answer to another request changes nothing
        agent.send(answer(request["request_id"], {"behavior": "allow", "updatedInput": {}}))
        rest = agent.read_json_until("result")
        tool_result = rest[0]["message"]["content"][0]
        assert tool_result["tool_use_id"] == tool_use["id"]
        assert (tool_result["content"], tool_result["is_error"]) == ("ran", False)
        assert rest[-1]["subtype"] == "success" and rest[-1]["permission_denials"] == []


def test_ask_deny_gives_the_refusal() -> None:
    tools = [
        {"name": "Bash", "input": {"command": "rm -rf build/"}, "ask": True},
        {"name": "Read", "input": {"file_path": "a.py"}},
    ]
    with Live("--permission-mode", "plan", config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("clean up"))
        request = agent.read_json_until("control_request")[-1]
        agent.send(answer(request["request_id"], {"behavior": "deny", "message": "not today"}))
        rest = agent.read_json_until("result")
        tool_result = rest[0]["message"]["content"][0]
        assert (tool_result["content"], tool_result["is_error"]) == ("not today", True)
        assert rest[0]["tool_use_result"] == "Error: not today"
        result = rest[-1]
        assert result["subtype"] == "success" and result["is_error"] is False
        assert result["permission_denials"] == [
            {
                "tool_name": "Bash",
                "tool_use_id": request["request"]["tool_use_id"],
                "tool_input": {"command": "rm -rf build/"},
            }
        ]
        # the next call went on without asking
        assert not any(o["type"] == "control_request" for o in rest)


def test_ask_deny_with_interrupt_ends_the_turn() -> None:
    tools = [{"name": "Bash", "input": {"command": "x"}, "ask": True}, SCRIPTED[0]]
    with Live("--permission-mode", "default", config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("go"))
        request = agent.read_json_until("control_request")[-1]
        agent.send(
            answer(
                request["request_id"], {"behavior": "deny", "message": "stop", "interrupt": True}
            )
        )
        rest = agent.read_json_until("result")
        assert rest[0]["message"]["content"][0]["content"] == "stop"
        assert rest[-1]["subtype"] == "error_during_execution" and rest[-1]["is_error"] is True
        assert not any(o.get("type") == "assistant" for o in rest)  # the Write never came


def test_interrupt_while_asking() -> None:
    tools = [{"name": "Bash", "input": {"command": "x"}, "ask": True}]
    with Live("--permission-mode", "default", config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("go"))
        request = agent.read_json_until("control_request")[-1]
        agent.send(encode_interrupt("r5"))
        values = agent.read_until("turn_end")
        assert kinds(values) == ["status", "tool_result", "system", "cost", "error", "turn_end"]
        assert values[1].tool_id == request["request"]["tool_use_id"] and values[1].is_error
        # a late answer to the dead request is ignored; the next prompt runs
        agent.send(answer(request["request_id"], {"behavior": "allow"}))
        agent.send(encode_user_message("again"))
        assert agent.read_json_until("control_request")[-1]["request_id"] != request["request_id"]


def test_stdin_eof_while_asking_ends_the_turn() -> None:
    tools = [{"name": "Bash", "input": {"command": "x"}, "ask": True}]
    with Live("--permission-mode", "default", config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("go"))
        agent.read_json_until("control_request")
        assert agent.proc.stdin is not None
        agent.proc.stdin.close()
        rest = agent.read_json_until("result")
        assert rest[-1]["subtype"] == "error_during_execution"
        assert agent.proc.wait(timeout=TIMEOUT) == 0


@pytest.mark.parametrize(
    ("args", "name", "asks"),
    [
        ((), "Bash", False),
        (("--permission-mode", "bypassPermissions"), "Bash", False),
        (("--permission-mode", "acceptEdits"), "Edit", False),
        (("--permission-mode", "acceptEdits"), "Bash", True),
        (("--permission-mode", "default"), "Edit", True),
    ],
)
def test_when_ask_asks(args: tuple[str, ...], name: str, asks: bool) -> None:
    tools = [{"name": name, "input": {"file_path": "a.py", "command": "ls"}, "ask": True}]
    with Live(*args, config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("go"))
        lines = agent.read_json_until("control_request" if asks else "result")
        assert any(o["type"] == "control_request" for o in lines) is asks
        if asks:
            agent.send(answer(lines[-1]["request_id"], {"behavior": "allow"}))
            assert agent.read_json_until("result")[-1]["subtype"] == "success"


def test_remembered_answers_are_not_asked_again() -> None:
    tools = [
        {"name": "Bash", "input": {"command": "make test"}, "ask": True},
        {"name": "Edit", "input": {"file_path": "a.py"}, "ask": True},
    ]
    with Live("--permission-mode", "default", config={"delayMs": 0, "tools": tools}) as agent:
        agent.send(encode_user_message("first"))
        bash = agent.read_json_until("control_request")[-1]
        suggestions = bash["request"]["permission_suggestions"]
        agent.send(
            answer(bash["request_id"], {"behavior": "allow", "updatedPermissions": suggestions})
        )
        edit = agent.read_json_until("control_request")[-1]
        assert edit["request"]["permission_suggestions"] == [
            {"type": "setMode", "mode": "acceptEdits", "destination": "session"}
        ]
        agent.send(
            answer(
                edit["request_id"],
                {
                    "behavior": "allow",
                    "updatedPermissions": edit["request"]["permission_suggestions"],
                },
            )
        )
        agent.read_json_until("result")
        agent.send(encode_user_message("second"))
        lines = agent.read_json_until("result")
        assert not any(o["type"] == "control_request" for o in lines)
        assert lines[0]["permissionMode"] == "acceptEdits"


# -- validation of the new keys --------------------------------------------------


def test_validate_tools_and_usage() -> None:
    config = {
        "tools": [
            {"name": "Bash", "input": {"command": "ls"}},
            {
                "name": "Edit",
                "input": {},
                "output": "",
                "isError": False,
                "hang": False,
                "ask": True,
            },
        ],
        "usage": {"input_tokens": 0, "output_tokens": 5},
    }
    checked = validate_config(config)
    assert checked["tools"] == config["tools"] and checked["usage"] == config["usage"]
    assert validate_config({"tools": None, "usage": None})["tools"] is None
    hundred = [{"name": "A", "input": {}}] * 100  # the bound (101 is refused below)
    assert validate_config({"tools": hundred})["tools"] == hundred


BAD_NEW_KEYS: list[tuple[dict[str, Any], str]] = [
    ({"tools": {}}, "tools"),
    ({"tools": "Bash"}, "tools"),
    ({"tools": [None]}, "tools.0"),
    ({"tools": [{"name": "Bash"}]}, "tools.0.input"),
    ({"tools": [{"input": {}}]}, "tools.0.name"),
    ({"tools": [{"name": "", "input": {}}]}, "tools.0.name"),
    ({"tools": [{"name": 3, "input": {}}]}, "tools.0.name"),
    ({"tools": [{"name": "x" * 201, "input": {}}]}, "tools.0.name"),
    ({"tools": [{"name": "Bash", "input": []}]}, "tools.0.input"),
    ({"tools": [{"name": "Bash", "input": {}, "output": 1}]}, "tools.0.output"),
    ({"tools": [{"name": "Bash", "input": {}, "output": "x" * 1_048_577}]}, "tools.0.output"),
    ({"tools": [{"name": "Bash", "input": {}, "hang": 1}]}, "tools.0.hang"),
    ({"tools": [{"name": "Bash", "input": {}, "ask": "yes"}]}, "tools.0.ask"),
    ({"tools": [{"name": "Bash", "input": {}, "isError": None}]}, "tools.0.isError"),
    ({"tools": [{"name": "Bash", "input": {}, "bogus": 1}]}, "tools.0.bogus"),
    ({"tools": [{"name": "A", "input": {}}, {"name": "B", "input": {}, "x": 1}]}, "tools.1.x"),
    ({"tools": [{"name": "A", "input": {}}] * 101}, "tools"),  # at most 100 entries
    ({"usage": []}, "usage"),
    ({"usage": {"input_tokens": -1}}, "usage.input_tokens"),
    ({"usage": {"input_tokens": True}}, "usage.input_tokens"),
    ({"usage": {"input_tokens": 1.5}}, "usage.input_tokens"),
    ({"usage": {"input_tokens": 10**9 + 1}}, "usage.input_tokens"),
    ({"usage": {"total_tokens": 1}}, "usage.total_tokens"),
]


@pytest.mark.parametrize(("config", "field"), BAD_NEW_KEYS)
def test_validate_rejects_bad_tools_and_usage(config: dict[str, Any], field: str) -> None:
    with pytest.raises(MockConfigError) as info:
        validate_config(config)
    assert info.value.field == field


GOOD_CONFIGS: list[dict[str, Any]] = [
    {},
    {"turns": 2, "hang": True, "failAfter": None},
    {"tools": [{"name": "Bash", "input": {"command": "ls"}, "ask": True, "output": "é"}]},
    {"tools": [], "usage": {"cache_creation_input_tokens": 1}},
    {"tools": None, "usage": None},
]


@pytest.mark.parametrize(
    ("config", "field"),
    [(c, None) for c in GOOD_CONFIGS]
    + BAD_NEW_KEYS
    + [({"turns": 0}, "turns"), ({"hang": 1}, "hang"), ({"bogus": 1}, "bogus")],
)
def test_schema_and_program_agree(config: dict[str, Any], field: str | None) -> None:
    """The documented JSON Schema accepts and refuses exactly what the program does."""
    schema = config_schema()
    if field is None:
        validate_config(config)
        schema_validate(schema, config)
        return
    with pytest.raises(MockConfigError) as mine:
        validate_config(config)
    with pytest.raises(InvalidParams) as theirs:
        schema_validate(schema, config)
    assert mine.value.field == field == theirs.value.field


def test_schema_describes_every_key() -> None:
    properties = config_schema()["properties"]
    assert set(properties) == set(DEFAULTS)
    assert all(p["description"] for p in properties.values())
    assert properties["tools"]["type"] == ["array", "null"]
    assert properties["usage"]["type"] == ["object", "null"]
