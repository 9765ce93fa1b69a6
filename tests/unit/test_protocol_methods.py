"""Tests of the method definitions, params validation and rpc.describe (protocol.methods)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from corral.protocol.errors import ALL_ERRORS, InvalidParams, MethodNotFound
from corral.protocol.events import EVENTS
from corral.protocol.methods import (
    GENERIC_ERRORS,
    METHODS,
    NO_NUL_PATTERN,
    SESSION,
    describe,
    validate_params,
)
from corral.protocol.schema import compile_schema, validate
from tests.support.contract import CONTRACT_METHODS

REQUIRED_VALUES: dict[str, object] = {
    "projectId": "proj-1",
    "provider": "mock",
    "prompt": "hello",
    "sessionId": "s-1",
    "key": "permission_mode",
    "value": "plan",
    "approvalId": "a-1",
    "decision": "allow",
}


def minimal(method: str) -> dict[str, Any]:
    params = METHODS[method].params
    return {name: REQUIRED_VALUES[name] for name in params["required"]}


def wrong_types(schema: dict) -> list[object]:
    """Values of the wrong JSON type for ``schema``."""
    t = schema.get("type")
    types = [t] if isinstance(t, str) else list(t or [])
    candidates: list[object] = [5, "x", True, 1.5, None, [], {}]
    out = []
    for c in candidates:
        kind = {
            bool: "boolean",
            int: "integer",
            float: "number",
            str: "string",
            type(None): "null",
            list: "array",
            dict: "object",
        }[type(c)]
        ok = kind in types or (kind == "integer" and "number" in types)
        if "enum" in schema and kind == "string":
            ok = False
        if not ok:
            out.append(c)
    return out


def out_of_range(schema: dict) -> list[object]:
    """Values of the right type that break a bound of ``schema``."""
    out: list[object] = []
    if "enum" in schema:
        out.append("no-such-value")
    if "minLength" in schema:
        out.append("")
    if "maxBytes" in schema:
        out.append("é" * (schema["maxBytes"] // 2 + 1))
    if "pattern" in schema:
        out.append("a\x00b" if schema["pattern"] == NO_NUL_PATTERN else "-starts-with-dash")
    if "minimum" in schema:
        out.append(schema["minimum"] - 1)
    if "maximum" in schema:
        out.append(schema["maximum"] + 1)
    return out


def test_every_contract_method_is_defined_once() -> None:
    assert set(METHODS) == CONTRACT_METHODS
    for name, spec in METHODS.items():
        assert spec.name == name
        assert spec.summary and "\n" not in spec.summary
        assert spec.params["type"] == "object"
        assert spec.params["additionalProperties"] is False
        for prop in spec.params["properties"].values():
            assert isinstance(prop, dict)


@pytest.mark.parametrize("method", sorted(CONTRACT_METHODS))
def test_minimal_params_are_valid(method: str) -> None:
    params = minimal(method)
    out = validate_params(method, params)
    assert {k: out[k] for k in params} == params
    if not METHODS[method].params["required"]:
        assert isinstance(validate_params(method, None), dict)
        assert isinstance(validate_params(method, {}), dict)


@pytest.mark.parametrize("method", sorted(CONTRACT_METHODS))
def test_unknown_and_non_object_params(method: str) -> None:
    with pytest.raises(InvalidParams) as info:
        validate_params(method, {**minimal(method), "bogus": 1})
    assert info.value.field == "bogus"
    for params in ([], [1], "x", 3, True):
        with pytest.raises(InvalidParams) as info:
            validate_params(method, params)
        assert info.value.field == "params"


@pytest.mark.parametrize("method", sorted(CONTRACT_METHODS))
def test_missing_required(method: str) -> None:
    params = minimal(method)
    for name in params:
        partial = {k: v for k, v in params.items() if k != name}
        with pytest.raises(InvalidParams) as info:
            validate_params(method, partial)
        assert info.value.field == name
        assert info.value.code == -32602
    if params:
        with pytest.raises(InvalidParams):
            validate_params(method, None)


@pytest.mark.parametrize("method", sorted(CONTRACT_METHODS))
def test_bad_value_of_each_param(method: str) -> None:
    for name, schema in METHODS[method].params["properties"].items():
        for value in wrong_types(schema) + out_of_range(schema):
            with pytest.raises(InvalidParams) as info:
                validate_params(method, {**minimal(method), name: value})
            assert info.value.field == name, (name, value)


def test_unknown_method() -> None:
    with pytest.raises(MethodNotFound):
        validate_params("no.such", {})
    with pytest.raises(MethodNotFound) as info:
        validate_params("x" * 10_000, {})
    assert len(info.value.message) < 200


def test_defaults_are_filled_without_mutating_input() -> None:
    params = {"sessionId": "s"}
    out = validate_params("session.messages.load", params)
    assert out == {"sessionId": "s", "afterSeq": 0, "limit": 500}
    assert params == {"sessionId": "s"}
    assert validate_params("session.list", {})["limit"] == 50
    assert validate_params("session.list", {"limit": 7})["limit"] == 7
    assert validate_params("notifications.list", None)["limit"] == 50


def test_agent_start_details() -> None:
    base = minimal("agent.start")
    full = {
        **base,
        "cwd": "/w",
        "model": "m",
        "systemPrompt": "",
        "maxTurns": 3,
        "permissionMode": "acceptEdits",
        "claudeConfigDir": "/c",
        "extraEnv": {"FOO": "1", "_x2": ""},
        "additionalDirectories": ["/a", "/b"],
        "worktreeName": "wt",
        "providerConfig": {"turns": 2, "hang": True, "nested": {"any": ["thing"]}},
        "idempotencyKey": "k-1",
    }
    assert validate_params("agent.start", full) == full

    def field_of(**override: object) -> str | None:
        with pytest.raises(InvalidParams) as info:
            validate_params("agent.start", {**base, **override})
        return info.value.field

    assert field_of(prompt="") == "prompt"
    # the contract's bounds, in UTF-8 bytes: prompt 256 KiB, other strings 4 KiB
    assert field_of(prompt="a" * (262_144 + 1)) == "prompt"
    validate_params("agent.start", {**base, "prompt": "a" * 262_144})
    assert field_of(prompt="é" * 131_072 + "a") == "prompt"
    validate_params("agent.start", {**base, "prompt": "é" * 131_072})
    assert field_of(model="a" * (4096 + 1)) == "model"
    validate_params("agent.start", {**base, "model": "a" * 4096})
    assert field_of(cwd="/" + "é" * 2048) == "cwd"
    validate_params("agent.start", {**base, "cwd": "/" + "é" * 2047 + "a"})
    assert field_of(extraEnv={"FOO": 1}) == "extraEnv.FOO"
    assert field_of(extraEnv={"1FOO": "x"}) == "extraEnv.1FOO"
    assert field_of(extraEnv={"A=B": "x"}) == "extraEnv.A=B"
    assert field_of(additionalDirectories=["/a", "/b", 3]) == "additionalDirectories.2"
    assert field_of(maxTurns=0) == "maxTurns"
    assert field_of(maxTurns=True) == "maxTurns"
    assert field_of(maxTurns=2.0) == "maxTurns"
    assert field_of(provider="gpt") == "provider"
    assert field_of(permissionMode="yolo") == "permissionMode"
    assert field_of(providerConfig=[]) == "providerConfig"
    assert field_of(projectId="a" * 129) == "projectId"
    assert field_of(projectId="bad/id") == "projectId"
    assert field_of(projectId="ok\n") == "projectId"
    validate_params("agent.start", {**base, "projectId": "A" + "b" * 127})
    validate_params("agent.start", {**base, "projectId": "a.b_c-d"})


def test_limits() -> None:
    validate_params("session.list", {"limit": 500, "before": 0, "status": "done"})
    validate_params("session.messages.load", {"sessionId": "s", "afterSeq": 0, "limit": 5000})
    validate_params("notifications.list", {"limit": 100})
    for method, params, field in [
        ("session.list", {"limit": 501}, "limit"),
        ("session.list", {"limit": 0}, "limit"),
        ("session.list", {"status": "sleeping"}, "status"),
        ("session.messages.load", {"sessionId": "s", "limit": 5001}, "limit"),
        ("session.messages.load", {"sessionId": "s", "afterSeq": -1}, "afterSeq"),
        ("notifications.list", {"limit": 101}, "limit"),
        ("settings.set", {"key": "nope", "value": "1"}, "key"),
        ("settings.set", {"key": "stall_timeout_ms", "value": 1000}, "value"),
    ]:
        with pytest.raises(InvalidParams) as info:
            validate_params(method, params)
        assert info.value.field == field


# ----------------------------------------------------------------------------- describe

KNOWN_REASONS = {cls.reason for cls in ALL_ERRORS}


def test_describe_shape() -> None:
    d = describe()
    assert d is describe()  # cached
    assert d["protocolVersion"] == 1
    assert set(d["methods"]) == CONTRACT_METHODS
    for name, m in d["methods"].items():
        assert set(m) == {"params", "result", "errors"}, name
        assert isinstance(m["params"], dict)
        assert isinstance(m["result"], dict)
        assert isinstance(m["errors"], list)
        assert set(m["errors"]) <= KNOWN_REASONS
        compile_schema(m["params"])
        compile_schema(m["result"])
    assert set(d["events"]) == set(EVENTS)
    for schema in d["events"].values():
        assert isinstance(schema, dict)
        compile_schema(schema)
    assert set(GENERIC_ERRORS) <= KNOWN_REASONS
    # serializable as is, and validates itself as the rpc.describe result
    orjson.dumps(d)
    validate(METHODS["rpc.describe"].result, d)


def test_describe_errors_match_contract() -> None:
    errors = {name: m["errors"] for name, m in describe()["methods"].items()}
    assert set(errors["agent.start"]) == {
        "session_running",
        "start_in_progress",
        "provider_unavailable",
        "overloaded",
        "invalid_params",
    }
    # the contract's reasons come first; corral also names what it answers while a
    # start is in flight and when relaunching a provider for a prompt fails
    assert errors["agent.stop"] == ["no_session", "start_in_progress"]
    assert errors["agent.prompt"] == ["no_session", "start_in_progress", "provider_unavailable"]
    assert errors["session.restore"] == ["start_in_progress"]
    assert errors["session.messages.load"] == ["not_found"]
    assert errors["session.purge"] == ["session_running"]
    assert errors["project.purge"] == ["session_running"]
    assert errors["settings.set"] == ["invalid_params"]
    assert errors["daemon.ping"] == []


def test_describe_params_match_validation() -> None:
    d = describe()
    for name, m in d["methods"].items():
        validate(m["params"], minimal(name))


SESSION_EXAMPLE = {
    "sessionId": "s-1",
    "projectId": "proj-1",
    "provider": "mock",
    "status": "done",
    "model": "mock-1",
    "costUsd": 0.0123,
    "inputTokens": 10,
    "outputTokens": 20,
    "createdAt": 1_700_000_000_000,
    "updatedAt": 1_700_000_000_500,
    "messageCount": 7,
    "lastSeqId": 7,
    "providerSessionId": "abc",
    "cacheReadTokens": 3,
}
MESSAGE_EXAMPLE = {
    "id": "m-1",
    "seqId": 1,
    "role": "user",
    "content": "hello",
    "timestamp": 1_700_000_000_000,
}
TOOL_MESSAGE_EXAMPLE = {
    "id": "m-2",
    "seqId": 2,
    "role": "tool-call",
    "content": "",
    "toolName": "Bash",
    "toolInput": '{"command": "ls"}',
    "toolPath": "/w/a.py",
    "parentId": "t-0",
    "timestamp": 1_700_000_000_001,
}
HEALTH_EXAMPLE = {
    "projectId": "proj-1",
    "sessionId": None,
    "status": None,
    "live": False,
    "activity": "inactive",
    "activeTool": None,
    "toolSince": None,
    "lastActivity": None,
    "idleMs": 0,
    "toolCalls": {"started": 0, "finished": 0},
    "costUsd": 0,
    "inputTokens": 0,
    "outputTokens": 0,
    "cacheReadTokens": 0,
    "cacheCreationTokens": 0,
    "burnRateUsdPerHour": 0,
    "tokensPerMinute": 0,
    "contextTokens": 0,
    "contextLimit": 200000,
    "contextPressure": 0,
    "openConflicts": 0,
    "attention": {"score": 0, "reason": ""},
    "stalled": False,
    "messageCount": 0,
    "extra": "allowed",
}
NOTIFICATION_EXAMPLE = {
    "id": "n-1",
    "variant": "success",
    "kind": "agent_complete",
    "message": "done",
    "sessionId": "s-1",
    "ts": 1_700_000_000_000,
}

RESULT_EXAMPLES: dict[str, dict[str, Any]] = {
    "daemon.ping": {"pong": True, "boot": "b-1", "time": 1_700_000_000_000},
    "daemon.info": {
        "version": "0.1.0",
        "boot": "b-1",
        "pid": 1234,
        "startedAt": 1_700_000_000_000,
        "endpoints": {"rpc": "ipc://x/rpc.sock", "events": "ipc://x/events.sock"},
        "dataDir": "/d",
        "sessions": {"live": 1, "stored": 4},
        "providers": {
            "mock": {"available": True, "detail": "built in"},
            "claude": {"available": False, "detail": "claude not found on PATH"},
        },
    },
    "daemon.shutdown": {"stopping": True},
    "agent.start": {"sessionId": "s-1", "status": "running", "model": None, "droppedEnv": []},
    "agent.stop": {"sessionId": "s-1", "status": "done"},
    "agent.prompt": {"sessionId": "s-1", "status": "running", "seqId": 8},
    "session.get": {"session": SESSION_EXAMPLE},
    "session.list": {"sessions": [SESSION_EXAMPLE, {**SESSION_EXAMPLE, "error": "boom"}]},
    "session.load": {"session": None},
    "session.messages.load": {
        "messages": [MESSAGE_EXAMPLE, TOOL_MESSAGE_EXAMPLE],
        "lastSeqId": 2,
        "hasMore": False,
    },
    "session.restore": {"restored": True, "session": SESSION_EXAMPLE},
    "session.clear": {"cleared": False},
    "session.purge": {"purged": True},
    "project.purge": {"purgedSessions": 3},
    "settings.getAll": {"settings": {"permission_mode": "default"}},
    "settings.set": {"settings": {"permission_mode": "plan"}},
    "health.get": {
        "projects": [HEALTH_EXAMPLE],
        "aggregates": {
            "running": 0,
            "idle": 1,
            "stalled": 0,
            "burnRateUsdPerHour": 0.5,
            "attention": None,
        },
    },
    "notifications.list": {"notifications": [NOTIFICATION_EXAMPLE]},
    "conflicts.list": {
        "conflicts": [
            {
                "projectId": "p",
                "path": "/w/a",
                "sessionIds": ["a", "b"],
                "projectIds": ["p"],
                "lastWriteTs": 1,
                "acknowledged": False,
            }
        ]
    },
    "conflicts.ack": {"acknowledged": 1},
    "approvals.list": {
        "approvals": [
            {
                "approvalId": "a-1",
                "sessionId": "s-1",
                "projectId": "proj-1",
                "provider": "claude",
                "toolName": "Bash",
                "input": {"command": "rm -rf build/"},
                "summary": "rm -rf build/",
                "createdAt": 1,
                "suggestions": [],
            }
        ]
    },
    "agent.approve": {"approvalId": "a-1", "decision": "deny"},
}


def test_example_results_validate() -> None:
    d = describe()
    for name, m in d["methods"].items():
        example = d if name == "rpc.describe" else RESULT_EXAMPLES[name]
        validate(m["result"], example)


def test_result_schemas_reject_wrong_shapes() -> None:
    results = {name: m["result"] for name, m in describe()["methods"].items()}
    with pytest.raises(InvalidParams) as info:
        validate(results["session.get"], {"session": {**SESSION_EXAMPLE, "status": "zombie"}})
    assert info.value.field == "session.status"
    with pytest.raises(InvalidParams) as info:
        validate(results["daemon.ping"], {"pong": False, "boot": "b", "time": 1})
    assert info.value.field == "pong"
    broken = {**MESSAGE_EXAMPLE, "seqId": 0}
    with pytest.raises(InvalidParams) as info:
        validate(
            results["session.messages.load"],
            {**RESULT_EXAMPLES["session.messages.load"], "messages": [MESSAGE_EXAMPLE, broken]},
        )
    assert info.value.field == "messages.1.seqId"
    missing = {k: v for k, v in SESSION_EXAMPLE.items() if k != "lastSeqId"}
    with pytest.raises(InvalidParams):
        validate(SESSION, missing)


def test_validate_params_is_fast() -> None:
    import time

    params = {
        "projectId": "proj-1",
        "provider": "mock",
        "prompt": "x" * 10_000,
        "extraEnv": {f"V{i}": "v" for i in range(10)},
        "providerConfig": {"turns": 2},
    }
    t0 = time.perf_counter()
    for _ in range(2000):
        validate_params("agent.start", params)
    per_call = (time.perf_counter() - t0) / 2000
    assert per_call < 1e-3
