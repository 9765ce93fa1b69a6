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
from corral.supervisor.providers.claude.stream import (
    ClaudeStreamParser,
    encode_interrupt,
    encode_user_message,
)
from corral.supervisor.providers.mock.config import DEFAULTS, MockConfigError, validate_config

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
