"""Codex notifications → Normalized: every recording's transcript, and the edge cases.

The recordings are replayed through :class:`CodexProtocol` (the harness lives
in ``test_codex_protocol.py``); the tables compare structure, with the run's
working directory shown as ``<cwd>`` and no ids.
"""

from __future__ import annotations

from typing import Any

import pytest

from corral.actors.normalized import Normalized
from corral.supervisor.providers.codex.items import Transcript, error_info
from corral.supervisor.providers.codex.pricing import Price
from tests.unit.test_codex_protocol import SCENARIOS, replay

NOTE = (
    "No price is known for Codex model gpt-5.5; its cost shows as $0. "
    "Set provider_settings.codex.config.prices to price it."
)
BUSY = "We\u2019re currently experiencing high demand, which may cause temporary errors."
FAILED = "stream disconnected before completion: fake response.failed"
ASK_ECHO = ("approval", "Bash", {"command": "echo hi"}, "echo hi")


def _clean(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace(cwd, "<cwd>")
    if isinstance(value, dict):
        return {k: _clean(v, cwd) for k, v in value.items()}
    return value


def summary(n: Normalized, cwd: str = "\0") -> tuple[Any, ...]:
    """The meaningful fields of a value (no ids, no run-specific paths)."""
    if n.kind == "init":
        return ("init", n.model, _clean(n.cwd, cwd))
    if n.kind in ("text", "thinking", "system"):
        return (n.kind, _clean(n.text, cwd))
    if n.kind == "error":
        return ("error", n.text, n.error_info)
    if n.kind == "tool_call":
        return ("call", n.tool_name, _clean(n.tool_input, cwd))
    if n.kind == "tool_result":
        return ("result", _clean(n.text, cwd), n.is_error)
    if n.kind == "cost":
        return ("cost", n.input_tokens, n.cache_read_tokens, n.output_tokens, n.context_window)
    if n.kind == "status":
        return ("status", n.status, n.text)
    if n.kind == "turn_end":
        return ("turn_end", n.is_error, n.text, n.error_info)
    if n.kind == "approval":
        return ("approval", n.tool_name, _clean(n.tool_input, cwd), _clean(n.text, cwd))
    return (n.kind,)


class EndsWithThreadItemsList:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("`thread/items/list`.")

    def __repr__(self) -> str:
        return "EndsWith('`thread/items/list`.')"


INIT = ("init", "gpt-5.5", "<cwd>")
COST = ("cost", 10, 0, 5, 258400)
DONE = ("turn_end", False, "", None)
INTERRUPTED = ("turn_end", True, "interrupted", None)
ECHO = ("call", "Bash", {"command": "echo hi"})
SLEEP = ("call", "Bash", {"command": "sleep 30"})
WRITE = ("call", "Write", {"file_path": "<cwd>/hello.txt", "content": "hello from apply_patch\n"})
CREATED = ("result", "Created <cwd>/hello.txt", False)
ASK_PATCH = ("approval", *WRITE[1:], "Write <cwd>/hello.txt")
APPROVAL_ANSWER = ("text", "Finished after the approval answer.")
RECOVERED = [("text", "Recovered on the next turn."), COST, ("system", NOTE), DONE]

EXPECTED: dict[str, list[list[tuple[Any, ...]]]] = {
    "text_only": [
        [
            INIT,
            ("thinking", "The user wants a greeting."),
            ("text", "Hello! I am a fake model."),
            ("cost", 200, 1000, 12, 258400),
            ("system", NOTE),
            DONE,
            ("text", "Second answer, same thread."),
            ("cost", 100, 1200, 7, 258400),
            DONE,
        ]
    ],
    "shell": [
        [
            INIT,
            ("thinking", "I will run echo."),
            ECHO,
            ("result", "hi\n", False),
            COST,
            ("system", NOTE),
            ("text", "The command printed hi."),
            COST,
            DONE,
        ]
    ],
    "shell_stream_and_fail": [
        [
            INIT,
            ("call", "Bash", {"command": "for i in 1 2 3; do echo line$i; sleep 0.4; done"}),
            ("result", "line1\nline2\nline3\n", False),
            COST,
            ("system", NOTE),
            ("call", "Bash", {"command": "echo oops >&2; exit 3"}),
            ("result", "oops\nExit code 3", True),
            COST,
            ("text", "The second command failed with exit code 3."),
            COST,
            DONE,
        ]
    ],
    "approval_accept": [
        [
            INIT,
            ECHO,
            ASK_ECHO,
            ("result", "hi\n", False),  # accepted
            COST,
            ("system", NOTE),
            APPROVAL_ANSWER,
            COST,
            DONE,
        ]
    ],
    "approval_decline": [
        [
            INIT,
            ECHO,
            ASK_ECHO,
            ("result", "Declined: the command was not run", True),
            COST,
            ("system", NOTE),
            APPROVAL_ANSWER,
            COST,
            DONE,
        ]
    ],
    "approval_cancel": [
        [
            INIT,
            ECHO,
            ASK_ECHO,
            ("result", "Declined: the command was not run", True),
            COST,
            ("system", NOTE),
            INTERRUPTED,
        ]
    ],
    "approval_on_request_escalated": [
        [
            INIT,
            ECHO,
            (
                "approval",
                "Bash",
                {"command": "echo hi"},
                "echo hi (Allow running echo hi outside the sandbox?)",
            ),
            ("result", "hi\n", False),
            COST,
            ("system", NOTE),
            APPROVAL_ANSWER,
            COST,
            DONE,
        ]
    ],
    "apply_patch": [
        [INIT, WRITE, CREATED, COST, ("system", NOTE), ("text", "Created hello.txt."), COST, DONE]
    ],
    "apply_patch_approval": [
        [
            INIT,
            WRITE,
            ASK_PATCH,
            CREATED,
            COST,
            ("system", NOTE),
            ("text", "Created hello.txt."),
            COST,
            DONE,
        ]
    ],
    "interrupt": [
        [
            INIT,
            ("text", "This is a slow str"),  # the partial message, emitted once at the turn end
            INTERRUPTED,
            ("text", "Answer after the interrupt."),
            COST,
            ("system", NOTE),
            DONE,
        ]
    ],
    "interrupt_command": [
        [
            INIT,
            SLEEP,
            COST,
            ("system", NOTE),
            ("result", "interrupted", True),
            INTERRUPTED,
            ("text", "Answer after the interrupt."),
            COST,
            DONE,
        ]
    ],
    "interrupt_command_clean": [
        # the command's late item/completed (after clean) adds no second result
        [INIT, SLEEP, COST, ("system", NOTE), ("result", "interrupted", True), INTERRUPTED]
    ],
    "eof_during_command": [[INIT, SLEEP]],
    "sigterm_during_command": [[INIT, SLEEP]],
    "error_500": [
        [
            INIT,
            ("status", "retrying", f"Reconnecting... 1/1 ({BUSY})"),
            ("error", BUSY, "internalServerError"),
            ("turn_end", True, BUSY, "internalServerError"),
            *RECOVERED,
        ]
    ],
    "error_failed_stream": [
        [
            INIT,
            ("text", "partial "),
            ("status", "retrying", f"Reconnecting... 1/1 ({FAILED})"),
            ("text", "partial "),  # Codex completed the partial message of each attempt
            ("error", FAILED, "other"),
            ("turn_end", True, FAILED, "other"),
            *RECOVERED,
        ]
    ],
    "resume": [
        [INIT, ("text", "OK, I will remember PAPAYA."), COST, ("system", NOTE), DONE],
        [
            ("status", "deprecation", EndsWithThreadItemsList()),
            INIT,
            ("cost", 0, 0, 0, 258400),  # the replayed totals add no tokens
            ("system", NOTE),
            ("text", "The code word was PAPAYA."),
            COST,
            DONE,
        ],
    ],
    "resume_exclude_turns": [
        [INIT, ("text", "OK, I will remember PAPAYA."), COST, ("system", NOTE), DONE],
        [
            INIT,
            ("cost", 0, 0, 0, 258400),
            ("system", NOTE),
            ("text", "The code word was PAPAYA."),
            COST,
            DONE,
        ],
    ],
}


def test_every_recording_has_an_expected_transcript() -> None:
    assert set(EXPECTED) | {"protocol_errors"} == set(SCENARIOS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recording_transcript(name: str) -> None:
    result = replay(name)
    cwd = result.meta["cwd"]
    got = [[summary(n, cwd) for n in p.items] for p in result.processes]
    assert got == EXPECTED[name]


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_tool_call_has_exactly_one_result(name: str) -> None:
    for p in replay(name).processes:
        items = p.items + p.protocol.close_open()
        calls = [n.tool_id for n in items if n.kind == "tool_call"]
        results = [n.tool_id for n in items if n.kind == "tool_result"]
        assert len(calls) == len(set(calls))
        assert sorted(map(str, calls)) == sorted(map(str, results))
        seen: set[str | None] = set()
        for n in items:
            if n.kind == "tool_call":
                seen.add(n.tool_id)
            elif n.kind == "tool_result":
                assert n.tool_id in seen  # a result never comes before its call


def test_the_process_ending_mid_command_closes_the_call() -> None:
    (p,) = replay("eof_during_command").processes
    (result,) = p.protocol.close_open()
    assert result.kind == "tool_result" and result.is_error
    assert result.text == "the provider process ended"
    assert p.protocol.close_open() == []


def test_protocol_errors_recording_has_no_transcript_only_errors() -> None:
    kinds = {n.kind for n in replay("protocol_errors").items}
    assert kinds == {"error"}


# ------------------------------------------------------------------ Transcript units


def feed(t: Transcript, *notes: tuple[str, dict[str, Any]]) -> list[Normalized]:
    out: list[Normalized] = []
    for method, params in notes:
        out.extend(t.notification(method, params))
    return out


def started(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "item/started", {"item": item, "threadId": "th", "turnId": "tu"}


def completed(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "item/completed", {"item": item, "threadId": "th", "turnId": "tu"}


def turn_completed(status: str, error: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    return "turn/completed", {
        "threadId": "th",
        "turn": {"id": "tu", "status": status, "error": error},
    }


def test_agent_message_deltas_merge_into_one_text_per_item() -> None:
    t = Transcript()
    out = feed(
        t,
        started({"type": "agentMessage", "id": "m1", "text": ""}),
        ("item/agentMessage/delta", {"itemId": "m1", "delta": "Hel"}),
        ("item/agentMessage/delta", {"itemId": "m1", "delta": "lo"}),
    )
    assert out == []
    out = feed(t, completed({"type": "agentMessage", "id": "m1", "text": ""}))
    assert [summary(n) for n in out] == [("text", "Hello")]


def test_reasoning_parts_and_raw_content() -> None:
    t = Transcript()
    out = feed(
        t,
        started({"type": "reasoning", "id": "r1", "summary": [], "content": []}),
        ("item/reasoning/summaryPartAdded", {"itemId": "r1", "summaryIndex": 0}),
        ("item/reasoning/summaryTextDelta", {"itemId": "r1", "delta": "First."}),
        ("item/reasoning/summaryPartAdded", {"itemId": "r1", "summaryIndex": 1}),
        ("item/reasoning/summaryTextDelta", {"itemId": "r1", "delta": "Second."}),
        turn_completed("interrupted"),
    )
    assert [summary(n) for n in out] == [("thinking", "First.\n\nSecond."), INTERRUPTED]
    out = feed(t, completed({"type": "reasoning", "id": "r2", "summary": [], "content": ["raw"]}))
    assert [summary(n) for n in out] == [("thinking", "raw")]
    assert feed(t, completed({"type": "reasoning", "id": "r3", "summary": [], "content": []})) == []


def test_plan_update_is_a_todo_call_with_its_result() -> None:
    t = Transcript()
    params = {
        "threadId": "th",
        "turnId": "tu",
        "explanation": "why",
        "plan": [
            {"step": "read", "status": "completed"},
            {"step": "write", "status": "inProgress"},
            {"step": "test", "status": "pending"},
        ],
    }
    call, result = feed(t, ("turn/plan/updated", params))
    assert summary(call) == (
        "call",
        "TodoWrite",
        {
            "todos": [
                {"content": "read", "status": "completed"},
                {"content": "write", "status": "in_progress"},
                {"content": "test", "status": "pending"},
            ],
            "explanation": "why",
        },
    )
    assert result.kind == "tool_result" and result.tool_id == call.tool_id
    plan = feed(t, completed({"type": "plan", "id": "p", "text": "1. do it"}))
    assert [summary(n) for n in plan] == [("text", "1. do it")]


def test_compaction_item_and_the_deprecated_notification_count_once() -> None:
    t = Transcript()
    t.own_turn("tu")
    out = feed(
        t,
        started({"type": "contextCompaction", "id": "cc"}),
        completed({"type": "contextCompaction", "id": "cc"}),
        ("thread/compacted", {"threadId": "th", "turnId": "tu"}),
    )
    assert [n.kind for n in out] == ["compaction"]
    t.own_turn("tu2")
    assert [n.kind for n in feed(t, ("thread/compacted", {"threadId": "th"}))] == ["compaction"]


def test_usage_counts_growth_prices_the_total_and_skips_replays() -> None:
    t = Transcript(prices={"m": Price(input=2.0, cached_input=0.5, output=10.0)}, model="m")

    def usage(turn: str, total: tuple[int, int, int], last: tuple[int, int, int]) -> dict[str, Any]:
        def breakdown(v: tuple[int, int, int]) -> dict[str, int]:
            return {
                "inputTokens": v[0],
                "cachedInputTokens": v[1],
                "outputTokens": v[2],
                "reasoningOutputTokens": 0,
                "totalTokens": v[0] + v[2],
            }

        return {
            "threadId": "th",
            "turnId": turn,
            "tokenUsage": {
                "total": breakdown(total),
                "last": breakdown(last),
                "modelContextWindow": 1000,
            },
        }

    replayed = feed(t, ("thread/tokenUsage/updated", usage("old", (1000, 0, 100), (10, 0, 1))))
    (cost,) = replayed
    assert (cost.input_tokens, cost.output_tokens, cost.cache_read_tokens) == (0, 0, 0)
    assert cost.cost_usd == pytest.approx((1000 * 2 + 100 * 10) / 1e6)
    t.own_turn("new")
    (cost,) = feed(t, ("thread/tokenUsage/updated", usage("new", (1300, 200, 150), (300, 200, 50))))
    assert (cost.input_tokens, cost.cache_read_tokens, cost.output_tokens) == (100, 200, 50)
    assert cost.cost_cumulative and cost.context_window == 1000
    assert cost.cost_usd == pytest.approx((1100 * 2 + 200 * 0.5 + 150 * 10) / 1e6)
    fresh = Transcript(model="m", prices={"m": Price(1, 1, 1)})
    fresh.own_turn("a")
    (cost,) = feed(fresh, ("thread/tokenUsage/updated", usage("a", (40, 0, 4), (40, 0, 4))))
    assert (cost.input_tokens, cost.output_tokens) == (40, 4)


def test_unknown_price_is_noted_once() -> None:
    t = Transcript(model="no-such-model")
    t.own_turn("tu")
    params = {"threadId": "th", "turnId": "tu", "tokenUsage": {"total": {}, "last": {}}}
    first = feed(t, ("thread/tokenUsage/updated", params))
    assert [n.kind for n in first] == ["cost", "system"] and first[0].cost_usd == 0
    assert "no-such-model" in first[1].text
    assert [n.kind for n in feed(t, ("thread/tokenUsage/updated", params))] == ["cost"]


def test_errors_retries_and_failed_turns() -> None:
    t = Transcript()
    retry = {"error": {"message": "Reconnecting... 1/5"}, "willRetry": True}
    assert [summary(n) for n in feed(t, ("error", retry))] == [
        ("status", "retrying", "Reconnecting... 1/5")
    ]
    error = {"message": "bad", "codexErrorInfo": {"httpConnectionFailed": {"httpStatusCode": 401}}}
    out = feed(t, turn_completed("failed", error))
    assert [summary(n) for n in out] == [
        ("error", "bad", "httpConnectionFailed"),
        ("turn_end", True, "bad", "httpConnectionFailed"),
    ]
    out = feed(t, turn_completed("weird"))
    assert out[-1].is_error and "weird" in out[-1].text


def test_notes_silence_and_unknowns() -> None:
    t = Transcript()
    assert [summary(n) for n in feed(t, ("warning", {"message": "careful"}))] == [
        ("system", "Codex: careful")
    ]
    assert [
        summary(n) for n in feed(t, ("configWarning", {"summary": "bad key", "details": "x"}))
    ] == [("system", "Codex: bad key: x")]
    out = feed(t, ("model/rerouted", {"fromModel": "a", "toModel": "b", "reason": "safety"}))
    assert out[0].text == "Codex rerouted the model from a to b (safety)" and t.model == "b"
    assert feed(t, ("account/rateLimits/updated", {}), ("turn/diff/updated", {})) == []
    (unknown,) = feed(t, ("brand/new", {"x": 1}))
    assert unknown.kind == "unknown" and unknown.raw == {"method": "brand/new", "params": {"x": 1}}
    (unknown,) = feed(t, completed({"type": "futureItem", "id": "f"}))
    assert unknown.kind == "unknown"
    assert feed(t, completed({"type": "userMessage", "id": "u", "content": []})) == []


def test_late_completion_of_a_closed_item_is_ignored() -> None:
    t = Transcript()
    command = {"type": "commandExecution", "id": "c", "command": "sleep 30", "status": "inProgress"}
    out = feed(t, started(command), turn_completed("interrupted"))
    assert [summary(n) for n in out] == [SLEEP, ("result", "interrupted", True), INTERRUPTED]
    late = dict(command, status="failed", exitCode=-1)
    assert feed(t, completed(late)) == []
    assert feed(t, started(command)) == []


def test_error_info_forms() -> None:
    assert error_info("usageLimitExceeded") == "usageLimitExceeded"
    assert error_info({"responseStreamDisconnected": {"httpStatusCode": None}}) == (
        "responseStreamDisconnected"
    )
    assert error_info(None) is None and error_info({}) is None
