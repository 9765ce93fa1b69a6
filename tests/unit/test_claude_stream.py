"""Tests of the Claude stream-json parser against the recorded real-CLI transcripts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.actors.normalized import Normalized
from corral.supervisor.providers.claude import stream as claude_stream
from corral.supervisor.providers.claude.stream import (
    ClaudeStreamParser,
    encode_interrupt,
    encode_user_message,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude"

# Matchers, so the tables below compare structure and not run-specific paths.


class StartsWith:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith(self.prefix)

    def __repr__(self) -> str:
        return f"StartsWith({self.prefix!r})"


class EndsWith:
    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith(self.suffix)

    def __repr__(self) -> str:
        return f"EndsWith({self.suffix!r})"


ABS_PATH = StartsWith("/")


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def summary(n: Normalized) -> tuple[Any, ...]:
    """The role-relevant fields of a value (no ids, uuids or timestamps)."""
    if n.kind == "init":
        return ("init", n.model, n.cwd)
    if n.kind in ("text", "thinking", "system", "error", "compaction"):
        return (n.kind, n.text)
    if n.kind == "tool_call":
        return ("tool_call", n.tool_name, n.tool_input)
    if n.kind == "tool_result":
        return ("tool_result", n.text, n.is_error)
    if n.kind == "cost":
        return (
            "cost",
            n.cost_usd,
            n.input_tokens,
            n.output_tokens,
            n.cache_read_tokens,
            n.cache_creation_tokens,
        )
    if n.kind == "status":
        return ("status", n.status, n.text)
    if n.kind == "turn_end":
        return ("turn_end", n.is_error, n.text)
    return (n.kind,)


def parse_file(name: str) -> list[Normalized]:
    parser = ClaudeStreamParser()
    out: list[Normalized] = []
    with (FIXTURES / f"{name}.jsonl").open("rb") as fh:
        for line in fh:
            out.extend(parser.feed_line(line))
    return out


def init(model: str = "claude-opus-5-5") -> tuple[Any, ...]:
    return ("init", model, ABS_PATH)


def done() -> tuple[Any, ...]:
    return ("turn_end", False, "")


def retry(reason: str, attempt: int, maximum: int) -> tuple[Any, ...]:
    return ("status", "retrying", f"retrying: {reason}, attempt {attempt}/{maximum}")


HELLO = "Hello! This is a plain text answer from the fake server."
API_500 = StartsWith("API Error: 500 Internal server error (fake). This is a server-side issue")
API_529 = StartsWith("API Error: 529 Overloaded (fake). This is a server-side issue")
REFUSED = "API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)"
INVALID_KEY = "Invalid API key · Fix external API key"
REJECTED = StartsWith("The user doesn't want to proceed with this tool use.")
EDE_NULL = "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=null"
EDE_TOOL = "[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"
DENIED = StartsWith("touch in '")
SLOW_COMMAND = {"command": "sleep 23.5; echo finished", "description": "Slow command"}
NO_CONVERSATION = "No conversation found with session ID: 99999999-2222-4333-8444-555555555555"

EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "text_only": [init(), ("text", HELLO), ("cost", approx(0.00388), 900, 14, 0, 0), done()],
    "append_system_prompt": [
        init(),
        ("text", HELLO),
        ("cost", approx(0.00388), 900, 14, 0, 0),
        done(),
    ],
    "model_flag": [
        init("claude-sonnet-4-5"),
        ("text", HELLO),
        ("cost", approx(0.00291), 900, 14, 0, 0),
        done(),
    ],
    "model_unknown": [
        init("my-fake-model-x"),
        ("text", HELLO),
        ("cost", approx(0.00388), 900, 14, 0, 0),
        done(),
    ],
    "tool_bash": [
        init(),
        ("thinking", "The user wants me to run echo. I will use the Bash tool."),
        ("text", "I'll run the command."),
        ("tool_call", "Bash", {"command": "echo hi from tool", "description": "Print a greeting"}),
        ("tool_result", "hi from tool", False),
        ("text", "The command printed: hi from tool. Done."),
        ("cost", approx(0.01104), 2500, 52, 0, 0),
        done(),
    ],
    "allowed_tools": [
        init(),
        ("text", "Creating the file."),
        (
            "tool_call",
            "Write",
            {"file_path": EndsWith("/hello.txt"), "content": "hello from the fake model\n"},
        ),
        ("tool_result", StartsWith("File created successfully at: /"), False),
        (
            "tool_call",
            "Bash",
            {"command": "cat hello.txt && exit 3", "description": "Show file then fail"},
        ),
        ("tool_result", "Exit code 3\nhello from the fake model", True),
        ("text", "Wrote hello.txt; the check command exited 3."),
        ("cost", approx(0.00042), 30, 15, 0, 0),
        done(),
    ],
    "permission_denied": [
        init(),
        (
            "tool_call",
            "Bash",
            {"command": "touch should_not_exist.txt", "description": "Create a file"},
        ),
        ("system", StartsWith("Permission denied: Bash — touch in '")),
        ("tool_result", DENIED, True),
        ("text", "The tool call was denied, so I stopped."),
        ("cost", approx(0.00028), 20, 10, 0, 0),
        done(),
    ],
    "bypass_as_root": [],
    "output_json": [("cost", approx(0.01104), 2500, 52, 0, 0), done()],
    "multiturn_stdin": [
        init(),
        ("text", "First answer: noted, your number is 7."),
        ("cost", approx(0.00014), 10, 5, 0, 0),
        done(),
        init(),
        ("tool_call", "Bash", {"command": "echo $((7*6))", "description": "Multiply"}),
        ("tool_result", "42", False),
        ("text", "Second answer: 7 times 6 is 42."),
        ("cost", approx(0.00042), 20, 10, 0, 0),
        done(),
    ],
    "resume_first": [
        init(),
        ("text", "Remembered: the code word is PAPAYA."),
        ("cost", approx(0.00014), 10, 5, 0, 0),
        done(),
    ],
    "resume_second": [
        init(),
        ("text", "The code word was PAPAYA (resumed session)."),
        ("cost", approx(0.00028), 10, 5, 0, 0),
        done(),
    ],
    "resume_unknown": [
        ("cost", 0.0, 0, 0, 0, 0),
        ("error", NO_CONVERSATION),
        ("turn_end", True, NO_CONVERSATION),
    ],
    "max_turns": [
        init(),
        ("tool_call", "Bash", {"command": "echo turn one", "description": "First step"}),
        ("tool_result", "turn one", False),
        ("cost", approx(0.00014), 10, 5, 0, 0),
        ("error", "Reached maximum number of turns (1)"),
        ("turn_end", True, "Reached maximum number of turns (1)"),
    ],
    "error_500": [
        init(),
        retry("server_error", 1, 2),
        retry("server_error", 2, 2),
        ("error", API_500),
        ("cost", 0.0, 0, 0, 0, 0),
        ("turn_end", True, API_500),
    ],
    "error_529": [
        init(),
        retry("overloaded", 1, 2),
        retry("overloaded", 2, 2),
        ("error", API_529),
        ("cost", 0.0, 0, 0, 0, 0),
        ("turn_end", True, API_529),
    ],
    "error_401": [
        init(),
        retry("authentication_failed", 1, 2),
        retry("authentication_failed", 2, 2),
        ("error", INVALID_KEY),
        ("cost", 0.0, 0, 0, 0, 0),
        ("turn_end", True, INVALID_KEY),
    ],
    "error_500_default_retries": [
        init(),
        *[retry("server_error", i, 10) for i in range(1, 11)],
        ("error", API_500),
        ("cost", 0.0, 0, 0, 0, 0),
        ("turn_end", True, API_500),
    ],
    "error_then_ok": [
        init(),
        retry("overloaded", 1, 10),
        ("text", "Recovered after one overloaded error."),
        ("cost", approx(0.00014), 10, 5, 0, 0),
        done(),
    ],
    "connection_refused": [
        init(),
        retry("connection error", 1, 2),
        retry("connection error", 2, 2),
        ("error", REFUSED),
        ("cost", 0.0, 0, 0, 0, 0),
        ("turn_end", True, REFUSED),
    ],
    "stream_error": [
        init(),
        ("text", "Starting an answer that will be cut by an SSE error event"),
        ("system", StartsWith("Your response above was cut off mid-stream.")),
        ("text", "Answer after the mid-stream error was retried."),
        ("cost", approx(0.0002), 20, 6, 0, 0),
        done(),
    ],
    "sigint_midstream": [
        init(),
        ("text", "This is a deliberately slow answer. It streams o"),
        ("system", "[Request interrupted by user]"),
        ("cost", approx(0.00036), 0, 0, 0, 0),
        ("error", EDE_NULL),
        ("turn_end", True, EDE_NULL),
    ],
    "sigint_midstream_nopartial": [
        init(),
        ("text", "This is a deliberately slow answer. It s"),
        ("system", "[Request interrupted by user]"),
        ("cost", approx(0.0003), 0, 0, 0, 0),
        ("error", EDE_NULL),
        ("turn_end", True, EDE_NULL),
    ],
    "sigint_during_tool": [
        init(),
        ("tool_call", "Bash", SLOW_COMMAND),
        ("tool_result", REJECTED, True),
        ("system", "[Request interrupted by user for tool use]"),
        ("cost", approx(0.00014), 10, 5, 0, 0),
        ("error", EDE_TOOL),
        ("turn_end", True, EDE_TOOL),
    ],
    "sigterm_midstream": [init()],
    "sigterm_during_tool": [
        init(),
        ("tool_call", "Bash", SLOW_COMMAND),
        ("tool_result", "Exit code 137", True),
    ],
}
EXPECTED["multiturn_stdin_burst"] = EXPECTED["multiturn_stdin"]


def transcript_names() -> list[str]:
    names = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        if path.name.endswith((".requests.jsonl", ".stdin.jsonl")):
            continue
        names.append(path.name[: -len(".jsonl")])
    return names


def test_every_transcript_has_expectations() -> None:
    assert transcript_names(), "no fixtures found"
    assert set(transcript_names()) == set(EXPECTED)


@pytest.mark.parametrize("name", transcript_names())
def test_transcript(name: str) -> None:
    got = [summary(n) for n in parse_file(name)]
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", transcript_names())
def test_transcript_has_no_unknown_lines(name: str) -> None:
    assert [n for n in parse_file(name) if n.kind == "unknown"] == []


def test_kinds_of_tool_bash() -> None:
    kinds = [n.kind for n in parse_file("tool_bash")]
    assert kinds == [
        "init",
        "thinking",
        "text",
        "tool_call",
        "tool_result",
        "text",
        "cost",
        "turn_end",
    ]


def test_init_carries_session_id_and_tool_ids_match() -> None:
    values = parse_file("tool_bash")
    first = values[0]
    assert first.provider_session_id and len(first.provider_session_id) == 36
    call = next(n for n in values if n.kind == "tool_call")
    result = next(n for n in values if n.kind == "tool_result")
    assert call.tool_id and call.tool_id == result.tool_id
    assert all(n.parent_id is None for n in values)


def test_resume_keeps_session_id() -> None:
    first = parse_file("resume_first")[0]
    second = parse_file("resume_second")[0]
    assert first.provider_session_id == "11111111-2222-4333-8444-555555555555"
    assert second.provider_session_id == first.provider_session_id


def test_cost_is_cumulative_across_turns() -> None:
    costs = [n for n in parse_file("multiturn_stdin") if n.kind == "cost"]
    assert [c.cost_usd for c in costs] == [approx(0.00014), approx(0.00042)]
    assert all(c.cost_cumulative for c in costs)
    # usage is per turn, the cost the whole process
    assert [c.input_tokens for c in costs] == [10, 20]


def test_cost_is_cumulative_across_resume() -> None:
    first = next(n for n in parse_file("resume_first") if n.kind == "cost")
    second = next(n for n in parse_file("resume_second") if n.kind == "cost")
    assert first.cost_usd == approx(0.00014)
    assert second.cost_usd == approx(0.00028)
    assert second.cost_usd is not None and first.cost_usd is not None
    assert second.cost_usd > first.cost_usd
    assert second.cost_cumulative


def test_api_error_is_reported_once() -> None:
    for name in ("error_500", "error_529", "error_401", "connection_refused"):
        values = parse_file(name)
        assert [n.kind for n in values].count("error") == 1, name
        end = values[-1]
        assert end.kind == "turn_end" and end.is_error


def test_output_json_is_one_result_object() -> None:
    values = parse_file("output_json")
    assert [n.kind for n in values] == ["cost", "turn_end"]
    assert values[-1].is_error is False


# -- synthetic lines -------------------------------------------------------


def feed(parser: ClaudeStreamParser, obj: object) -> list[Normalized]:
    return parser.feed_line(orjson.dumps(obj))


def test_blank_lines_yield_nothing() -> None:
    parser = ClaudeStreamParser()
    assert parser.feed_line(b"") == []
    assert parser.feed_line("  \n") == []


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"{",
        b"\xff\xfe\x00garbage",
        '{"type": "assistant"',
        b"[1, 2]",
        b"42",
        b'"text"',
        b"null",
        "\ud800",
    ],
)
def test_undecodable_or_non_object_lines_are_unknown(line: bytes | str) -> None:
    values = ClaudeStreamParser().feed_line(line)
    assert len(values) == 1
    assert values[0].kind == "unknown"
    assert values[0].raw is not None and "unparsed" in values[0].raw


def test_unparsed_text_is_bounded() -> None:
    values = ClaudeStreamParser().feed_line(b"x" * 100_000)
    assert values[0].raw is not None
    assert len(values[0].raw["unparsed"]) == claude_stream.UNPARSED_LIMIT


def test_unknown_type_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    parser = ClaudeStreamParser()
    line = {"type": "brand_new_event_for_test", "x": 1}
    with caplog.at_level(logging.WARNING, logger="corral.providers.claude"):
        first = feed(parser, line)
        second = feed(parser, line)
    assert first[0].kind == "unknown" and first[0].raw == line
    assert second[0].kind == "unknown"
    hits = [r for r in caplog.records if "brand_new_event_for_test" in r.getMessage()]
    assert len(hits) == 1


def test_unknown_system_subtype() -> None:
    values = feed(ClaudeStreamParser(), {"type": "system", "subtype": "hook_started"})
    assert [n.kind for n in values] == ["unknown"]


@pytest.mark.parametrize("subtype", ["thinking_tokens", "status", "ui_invalidate"])
def test_silent_system_subtypes(subtype: str) -> None:
    assert feed(ClaudeStreamParser(), {"type": "system", "subtype": subtype}) == []


def test_compact_boundary() -> None:
    line = {
        "type": "system",
        "subtype": "compact_boundary",
        "compact_metadata": {"trigger": "auto", "pre_tokens": 12345},
    }
    values = feed(ClaudeStreamParser(), line)
    assert [n.kind for n in values] == ["compaction"]
    assert "auto" in values[0].text


def test_stream_event_yields_nothing() -> None:
    line = {"type": "stream_event", "event": {"type": "message_start"}}
    assert feed(ClaudeStreamParser(), line) == []


def test_control_response_is_a_status() -> None:
    line = {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": "r1", "response": {"still_queued": []}},
    }
    values = feed(ClaudeStreamParser(), line)
    assert [(n.kind, n.status, n.text) for n in values] == [("status", "control_response", "r1")]


def test_rate_limit_event_is_a_status() -> None:
    line = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed_warning"}}
    values = feed(ClaudeStreamParser(), line)
    assert [(n.kind, n.status) for n in values] == [("status", "rate_limit")]


def test_parent_tool_use_id_is_propagated() -> None:
    parser = ClaudeStreamParser()
    assistant = {
        "type": "assistant",
        "parent_tool_use_id": "toolu_parent",
        "message": {
            "content": [
                {"type": "text", "text": "sub"},
                {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "a"}},
            ]
        },
    }
    user = {
        "type": "user",
        "parent_tool_use_id": "toolu_parent",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    }
    values = feed(parser, assistant) + feed(parser, user)
    assert [n.kind for n in values] == ["text", "tool_call", "tool_result"]
    assert {n.parent_id for n in values} == {"toolu_parent"}


def test_tool_result_content_list_and_fallback() -> None:
    parser = ClaudeStreamParser()
    listed = {
        "type": "user",
        "message": {
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    "is_error": True,
                }
            ]
        },
    }
    empty = {
        "type": "user",
        "message": {"content": [{"type": "tool_result", "tool_use_id": "t2", "content": ""}]},
        "tool_use_result": {"stdout": "out", "stderr": "err", "interrupted": False},
    }
    values = feed(parser, listed) + feed(parser, empty)
    assert [(n.text, n.is_error, n.tool_id) for n in values] == [
        ("a\nb", True, "t1"),
        ("out\nerr", False, "t2"),
    ]


def test_user_prompt_echo_yields_nothing() -> None:
    parser = ClaudeStreamParser()
    assert feed(parser, {"type": "user", "message": {"role": "user", "content": "hi"}}) == []
    blocks = {"type": "user", "message": {"content": [{"type": "text", "text": "hi"}]}}
    assert feed(parser, blocks) == []
    synthetic = dict(blocks, isSynthetic=True)
    assert [n.kind for n in feed(parser, synthetic)] == ["system"]


def test_aborted_partial_text_is_kept() -> None:
    line = {
        "type": "assistant",
        "aborted": True,
        "message": {"content": [{"type": "text", "text": "partial"}]},
    }
    assert [(n.kind, n.text) for n in feed(ClaudeStreamParser(), line)] == [("text", "partial")]


def test_error_dedup_is_per_turn() -> None:
    parser = ClaudeStreamParser()
    synthetic = {
        "type": "assistant",
        "is_api_error_message": True,
        "message": {"model": "<synthetic>", "content": [{"type": "text", "text": "boom"}]},
    }
    result = {"type": "result", "subtype": "success", "is_error": True, "result": "boom"}
    first = feed(parser, synthetic) + feed(parser, result)
    assert [n.kind for n in first] == ["error", "cost", "turn_end"]
    # next turn: the same error text without a synthetic line is reported again
    second = feed(parser, result)
    assert [n.kind for n in second] == ["cost", "error", "turn_end"]


def test_result_error_text_fallbacks() -> None:
    parser = ClaudeStreamParser()
    status_only = {"type": "result", "is_error": True, "api_error_status": 503}
    assert feed(parser, status_only)[-1].text == "API error 503"
    subtype_only = {"type": "result", "is_error": True, "subtype": "error_during_execution"}
    assert feed(parser, subtype_only)[-1].text == "error_during_execution"
    joined = {"type": "result", "is_error": True, "errors": ["a", "b"], "result": "x"}
    assert feed(parser, joined)[-1].text == "a; b"


def test_result_done_vs_error_only_from_is_error() -> None:
    parser = ClaudeStreamParser()
    ok = feed(parser, {"type": "result", "subtype": "error_max_turns", "is_error": False})
    assert ok[-1].kind == "turn_end" and ok[-1].is_error is False
    bad = feed(parser, {"type": "result", "subtype": "success", "is_error": True})
    assert bad[-1].kind == "turn_end" and bad[-1].is_error is True


def test_wrong_field_types_do_not_crash() -> None:
    parser = ClaudeStreamParser()
    lines: list[dict[str, Any]] = [
        {"type": "system", "subtype": "init", "model": 5, "session_id": [], "cwd": None},
        {"type": "system", "subtype": "api_retry", "attempt": "x", "error_status": 500},
        {"type": "assistant", "message": "nope"},
        {"type": "assistant", "message": {"content": [1, None, {"type": "tool_use", "input": 3}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "content": 7}]}},
        {"type": "result", "total_cost_usd": "1", "usage": [], "is_error": "yes"},
        {"type": "result", "total_cost_usd": True, "usage": {"input_tokens": 1.5e300}},
        {"type": 3},
    ]
    for line in lines:
        for value in feed(parser, line):
            assert isinstance(value, Normalized)


def test_encoders() -> None:
    line = encode_user_message("héllo\nworld")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {
        "type": "user",
        "message": {"role": "user", "content": "héllo\nworld"},
    }
    interrupt = encode_interrupt("r1")
    assert interrupt.endswith(b"\n") and interrupt.count(b"\n") == 1
    assert orjson.loads(interrupt) == {
        "type": "control_request",
        "request_id": "r1",
        "request": {"subtype": "interrupt"},
    }


# -- properties ------------------------------------------------------------

KNOWN_KINDS = {
    "init",
    "text",
    "thinking",
    "tool_call",
    "tool_result",
    "error",
    "system",
    "cost",
    "status",
    "compaction",
    "turn_end",
    "unknown",
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
small_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(st.text(max_size=4), children, max_size=2)
    ),
    max_leaves=4,
)

TYPES = [
    "system",
    "assistant",
    "user",
    "result",
    "stream_event",
    "control_response",
    "rate_limit_event",
    "other",
]
SUBTYPES = [
    "init",
    "api_retry",
    "permission_denied",
    "compact_boundary",
    "thinking_tokens",
    "success",
    "error_during_execution",
    "other",
]
BLOCK_TYPES = ["text", "thinking", "tool_use", "tool_result", "redacted_thinking", "image"]
FIELD_NAMES = ["text", "thinking", "name", "input", "id", "content", "is_error", "tool_use_id"]
LINE_FIELDS = [
    "parent_tool_use_id",
    "is_api_error_message",
    "isSynthetic",
    "tool_use_result",
    "errors",
    "result",
    "usage",
    "total_cost_usd",
    "is_error",
    "attempt",
    "max_retries",
    "error_status",
    "error",
    "tool_name",
    "message",
    "session_id",
    "model",
    "cwd",
    "response",
    "api_error_status",
]

blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(BLOCK_TYPES)},
    optional={k: small_json for k in FIELD_NAMES},
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "content": st.lists(blocks | small_json, max_size=3) | small_json,
        "model": small_json,
        "id": small_json,
    },
)
lines = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | small_json},
    optional={
        "subtype": st.sampled_from(SUBTYPES) | small_json,
        "message": messages | small_json,
        **{k: small_json for k in LINE_FIELDS if k != "message"},
    },
)


def check(values: list[Normalized]) -> None:
    assert isinstance(values, list)
    for value in values:
        assert isinstance(value, Normalized)
        assert value.kind in KNOWN_KINDS
        if value.kind == "unknown":
            assert value.raw is not None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    check(ClaudeStreamParser().feed_line(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(data: str) -> None:
    check(ClaudeStreamParser().feed_line(data))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises(value: object) -> None:
    check(ClaudeStreamParser().feed_line(json.dumps(value)))


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, min_size=1, max_size=3))
def test_line_shaped_json_never_raises(objs: list[dict[str, Any]]) -> None:
    parser = ClaudeStreamParser()
    for obj in objs:
        check(parser.feed_line(json.dumps(obj).encode()))
