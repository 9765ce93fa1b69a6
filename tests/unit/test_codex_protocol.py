"""CodexProtocol against the recorded real ``codex app-server`` transcripts.

Every recording's ``out`` lines are replayed through a :class:`CodexProtocol`
(:func:`replay`): the protocol's own requests stand in for the recorder's, the
recorder's request ids are mapped onto the protocol's, the recorder's answer to
an approval request is given as the same decision through ``answer()`` (a
``cancel`` through ``interrupt()``), and every line the protocol writes is kept.
The lines are checked against the app-server's JSON Schema (a small validator
below covers the keywords the bundle uses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.actors.normalized import Normalized
from corral.actors.ports import ApprovalDecision
from corral.supervisor.providers.codex.approvals import APPROVAL_METHODS
from corral.supervisor.providers.codex.options import CodexSessionOptions, session_options
from corral.supervisor.providers.codex.protocol import DECLINES, CodexProtocol, decline

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex-app-server"
SCHEMA = FIXTURES / "schema" / "codex_app_server_protocol.experimental.schemas.json"
SCENARIOS = sorted(p.name[: -len(".meta.json")] for p in FIXTURES.glob("*.meta.json"))

# Requests the protocol itself makes; the recorder's other requests are not its.
OWN_METHODS = frozenset(
    {
        "initialize",
        "thread/start",
        "thread/resume",
        "turn/start",
        "turn/interrupt",
        "thread/backgroundTerminals/clean",
    }
)


# ------------------------------------------------------------------ replay harness


@dataclass
class Process:
    """One replayed app-server process."""

    protocol: CodexProtocol
    items: list[Normalized] = field(default_factory=list)
    written: list[dict[str, Any]] = field(default_factory=list)
    #: (server request, the protocol's answer) pairs
    answers: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)


@dataclass
class Replay:
    name: str
    meta: dict[str, Any]
    processes: list[Process]

    @property
    def items(self) -> list[Normalized]:
        return [n for p in self.processes for n in p.items]

    @property
    def written(self) -> list[dict[str, Any]]:
        return [m for p in self.processes for m in p.written]


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / f"{name}.jsonl").read_text().splitlines()]


def meta(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.meta.json").read_text())


def _first_prompt(records: list[dict[str, Any]]) -> str:
    for record in records:
        msg = record.get("msg") or {}
        if record["dir"] == "in" and msg.get("method") == "turn/start":
            return str(msg["params"]["input"][0]["text"])
    return "hello"


def _turn_text(msg: dict[str, Any]) -> str:
    params = msg.get("params") or {}
    inputs = params.get("input") or [{}]
    return str(inputs[0].get("text", ""))


#: the recorder's approval decisions, as a person's decision (None: an interrupt)
RECORDED_DECISIONS: dict[str, ApprovalDecision | None] = {
    "accept": ApprovalDecision(allow=True),
    "acceptForSession": ApprovalDecision(allow=True, remember=True),
    "decline": ApprovalDecision(allow=False),
    "cancel": None,
}


def replay(name: str, options: CodexSessionOptions | None = None) -> Replay:
    records = load(name)
    by_proc: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_proc.setdefault(int(record.get("proc", 1)), []).append(record)
    processes: list[Process] = []
    thread_id: str | None = None
    for number in sorted(by_proc):
        opts = options or CodexSessionOptions(cwd=meta(name)["cwd"])
        if number > 1:
            opts = CodexSessionOptions(cwd=opts.cwd, resume_thread_id=thread_id)
        proc = _replay_process(by_proc[number], opts)
        processes.append(proc)
        thread_id = proc.protocol.thread_id
    return Replay(name, meta(name), processes)


def _replay_process(records: list[dict[str, Any]], options: CodexSessionOptions) -> Process:
    proc = Process(CodexProtocol(options))
    unmatched: list[dict[str, Any]] = []  # the protocol's requests not yet mapped
    id_map: dict[Any, Any] = {}
    opened = False
    asked: dict[Any, dict[str, Any]] = {}  # approval requests not answered yet, by id

    def take(lines: list[bytes]) -> None:
        for line in lines:
            assert line.endswith(b"\n") and line.count(b"\n") == 1
            msg = orjson.loads(line)
            proc.written.append(msg)
            if "method" in msg and "id" in msg:
                unmatched.append(msg)

    def match(method: str) -> dict[str, Any] | None:
        for index, msg in enumerate(unmatched):
            if msg["method"] == method:
                return unmatched.pop(index)
        return None

    for record in records:
        msg = record.get("msg")
        if record["dir"] == "in":
            if msg is not None and "method" not in msg and msg.get("id") in asked:
                _answer_approval(proc, asked.pop(msg["id"]), msg, take)
                continue
            if msg is None or "method" not in msg or "id" not in msg:
                continue  # a notification, an answer to a server request, a raw line
            method = msg["method"]
            if method not in OWN_METHODS:
                continue
            if method == "initialize" and not opened:
                opened = True
                take(proc.protocol.opening(_first_prompt(records)))
            elif method == "turn/start" and not any(m["method"] == method for m in unmatched):
                take(proc.protocol.prompt(_turn_text(msg)))
            elif method == "turn/interrupt" and not any(m["method"] == method for m in unmatched):
                take(proc.protocol.interrupt())
            ours = match(method)
            if ours is not None:
                id_map[msg["id"]] = ours["id"]
            continue
        if msg is None:
            line = str(record.get("raw", "")).encode()
        else:
            if "method" not in msg and "id" in msg:
                msg = dict(msg, id=id_map.get(msg["id"], f"recorded-{msg['id']}"))
            line = orjson.dumps(msg)
        found, replies = proc.protocol.feed(line)
        proc.items.extend(found)
        if msg is not None and "method" in msg and "id" in msg:
            if any(n.kind == "approval" for n in found):
                assert replies == [], f"approval request {msg['method']} answered at once"
                asked[msg["id"]] = msg
                continue
            assert len(replies) == 1, f"server request {msg['method']} got {replies}"
            proc.answers.append((msg, orjson.loads(replies[0])))
            proc.written.append(orjson.loads(replies[0]))
        else:
            take(replies)
    return proc


def _answer_approval(
    proc: Process,
    request: dict[str, Any],
    recorded: dict[str, Any],
    take: Any,
) -> None:
    """Give the protocol the decision the recorder sent for ``request``."""
    (approval,) = [n for n in proc.items if n.kind == "approval" and _asks(n, request)]
    decision = RECORDED_DECISIONS[recorded["result"]["decision"]]
    if decision is None:
        lines = proc.protocol.interrupt()
    else:
        lines = proc.protocol.answer(approval.raw["request"], decision)
    answer = orjson.loads(lines[0])
    proc.answers.append((request, answer))
    proc.written.append(answer)
    take(lines[1:])


def _asks(n: Normalized, request: dict[str, Any]) -> bool:
    return n.raw is not None and n.raw["request"]["id"] == request["id"]


# ------------------------------------------------------------------ a JSON Schema subset


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


def _resolve(ref: str) -> Any:
    node: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def errors(node: Any, value: Any, path: str = "$") -> list[str]:
    """Why ``value`` does not match ``node`` (empty when it does)."""
    if node is True or node == {}:
        return []
    if node is False:
        return [f"{path}: nothing is allowed"]
    if "$ref" in node:
        return errors(_resolve(node["$ref"]), value, path)
    found: list[str] = []
    kind = node.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{path}: {value!r} is not {kinds}"]
    if "enum" in node and value not in node["enum"]:
        found.append(f"{path}: {value!r} not in {node['enum']}")
    if "const" in node and value != node["const"]:
        found.append(f"{path}: {value!r} != {node['const']!r}")
    if "minLength" in node and isinstance(value, str) and len(value) < node["minLength"]:
        found.append(f"{path}: too short")
    for sub in node.get("allOf", []):
        found += errors(sub, value, path)
    for key in ("oneOf", "anyOf"):
        if key in node:
            matches = [s for s in node[key] if not errors(s, value, path)]
            if not matches:
                found.append(f"{path}: matches none of {key}")
            elif key == "oneOf" and len(matches) > 1:
                found.append(f"{path}: matches several of oneOf")
    if isinstance(value, dict):
        props = node.get("properties", {})
        for req in node.get("required", []):
            if req not in value:
                found.append(f"{path}: missing {req}")
        for key, item in value.items():
            if key in props:
                found += errors(props[key], item, f"{path}.{key}")
            elif node.get("additionalProperties") is False:
                found.append(f"{path}: unexpected {key}")
            elif isinstance(node.get("additionalProperties"), dict):
                found += errors(node["additionalProperties"], item, f"{path}.{key}")
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            found += errors(node["items"], item, f"{path}[{index}]")
    return found


def _variant(union: str, method: str) -> dict[str, Any]:
    for variant in schema()["definitions"][union]["oneOf"]:
        if variant["properties"]["method"]["enum"] == [method]:
            return variant
    raise AssertionError(f"{method} is not a {union}")


def check_request(msg: dict[str, Any]) -> None:
    """A request or notification the protocol wrote, against the schema."""
    union = "ClientRequest" if "id" in msg else "ClientNotification"
    problems = errors(_variant(union, msg["method"]), msg)
    assert not problems, (msg, problems)


def _response_definition(method: str) -> dict[str, Any]:
    params_ref = _variant("ServerRequest", method)["properties"]["params"]["$ref"]
    name = params_ref.rsplit("/", 1)[1].removesuffix("Params") + "Response"
    if name in schema()["definitions"]:
        return schema()["definitions"][name]
    return schema()["definitions"]["v2"][name]


# ------------------------------------------------------------------ handshake


def test_opening_is_initialize_as_corral_with_the_experimental_api() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project", model="gpt-5.5"))
    (line,) = protocol.opening("hello")
    msg = orjson.loads(line)
    assert msg["method"] == "initialize" and msg["id"] == 0
    assert msg["params"]["clientInfo"]["name"] == "corral"
    assert msg["params"]["capabilities"] == {"experimentalApi": True}
    assert "jsonrpc" not in msg
    check_request(msg)


def _start(protocol: CodexProtocol, prompt: str = "hello") -> list[dict[str, Any]]:
    written = [orjson.loads(line) for line in protocol.opening(prompt)]
    items, lines = protocol.feed(b'{"id": 0, "result": {"userAgent": "x"}}')
    assert items == []
    return written + [orjson.loads(line) for line in lines]


def test_handshake_starts_a_thread_with_policy_sandbox_model_and_instructions() -> None:
    options = session_options(
        {
            "cwd": "/srv/project",
            "model": "gpt-5.5",
            "systemPrompt": "Be brief.",
            "permissionMode": "plan",
            "providerConfig": {"config": {"model_reasoning_effort": "low"}},
        }
    )
    written = _start(CodexProtocol(options))
    assert [m["method"] for m in written] == ["initialize", "initialized", "thread/start"]
    assert written[2]["params"] == {
        "approvalPolicy": "on-request",
        "sandbox": "read-only",
        "cwd": "/srv/project",
        "model": "gpt-5.5",
        "developerInstructions": "Be brief.",
        "config": {"model_reasoning_effort": "low"},
    }
    for msg in written:
        check_request(msg)


def test_thread_result_gives_init_then_the_first_turn() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    _start(protocol, "Say hello")
    result = {
        "thread": {"id": "th-1", "cwd": "/srv/project"},
        "model": "gpt-5.5",
        "cwd": "/srv/project",
        "approvalPolicy": "never",
    }
    items, lines = protocol.feed(orjson.dumps({"id": 1, "result": result}))
    assert items == [
        Normalized(kind="init", provider_session_id="th-1", model="gpt-5.5", cwd="/srv/project")
    ]
    (turn,) = [orjson.loads(line) for line in lines]
    assert turn["method"] == "turn/start"
    assert turn["params"] == {"threadId": "th-1", "input": [{"type": "text", "text": "Say hello"}]}
    check_request(turn)


def test_resume_asks_for_the_thread_without_its_turns() -> None:
    options = session_options({"cwd": "/srv/project", "systemPrompt": "x"}, resume_thread_id="th-9")
    written = _start(CodexProtocol(options))
    resume = written[-1]
    assert resume["method"] == "thread/resume"
    assert resume["params"]["threadId"] == "th-9"
    assert resume["params"]["excludeTurns"] is True
    assert "developerInstructions" not in resume["params"]
    check_request(resume)


def test_interrupt_is_turn_interrupt_plus_clean_and_schema_valid() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    _start(protocol)
    protocol.feed(orjson.dumps({"id": 1, "result": {"thread": {"id": "th-1"}, "model": "m"}}))
    protocol.feed(orjson.dumps({"id": 2, "result": {"turn": {"id": "tu-1"}}}))
    assert protocol.turn_id == "tu-1"
    lines = [orjson.loads(line) for line in protocol.interrupt()]
    assert [m["method"] for m in lines] == ["turn/interrupt", "thread/backgroundTerminals/clean"]
    assert lines[0]["params"] == {"threadId": "th-1", "turnId": "tu-1"}
    assert lines[1]["params"] == {"threadId": "th-1"}
    for msg in lines:
        check_request(msg)


def test_interrupt_before_the_turn_id_is_sent_once_turn_start_answers() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    _start(protocol)
    protocol.feed(orjson.dumps({"id": 1, "result": {"thread": {"id": "th-1"}, "model": "m"}}))
    assert protocol.interrupt() == []
    _, lines = protocol.feed(orjson.dumps({"id": 2, "result": {"turn": {"id": "tu-1"}}}))
    assert [orjson.loads(line)["method"] for line in lines] == [
        "turn/interrupt",
        "thread/backgroundTerminals/clean",
    ]


def test_interrupt_during_the_handshake_ends_the_first_turn_unstarted() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    _start(protocol)
    assert protocol.interrupt() == []
    items, lines = protocol.feed(
        orjson.dumps({"id": 1, "result": {"thread": {"id": "th-1"}, "model": "m"}})
    )
    assert [n.kind for n in items] == ["init", "turn_end"]
    assert items[1].is_error and items[1].text == "interrupted"
    assert lines == []


def test_a_prompt_during_a_turn_waits_for_the_turn_end() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    assert protocol.capabilities.mid_turn_prompts is False
    assert protocol.mid_turn_prompts is False
    _start(protocol)
    protocol.feed(orjson.dumps({"id": 1, "result": {"thread": {"id": "th-1"}, "model": "m"}}))
    protocol.feed(orjson.dumps({"id": 2, "result": {"turn": {"id": "tu-1"}}}))
    assert protocol.prompt("second") == []
    done = {"threadId": "th-1", "turn": {"id": "tu-1", "status": "completed"}}
    items, lines = protocol.feed(orjson.dumps({"method": "turn/completed", "params": done}))
    assert [n.kind for n in items] == ["turn_end"]
    (turn,) = [orjson.loads(line) for line in lines]
    assert turn["method"] == "turn/start" and turn["params"]["input"][0]["text"] == "second"


def test_error_answers_kill_the_start_or_the_turn() -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project", resume_thread_id="gone"))
    _start(protocol)
    error = {"code": -32600, "message": "no rollout found for thread id gone"}
    items, lines = protocol.feed(orjson.dumps({"id": 1, "error": error}))
    assert [n.kind for n in items] == ["error", "turn_end"]
    assert "no rollout found" in items[0].text
    assert items[1].is_error and items[1].error_info == "resume_failed"
    assert lines == []
    (retry,) = [orjson.loads(line) for line in protocol.prompt("again")]
    assert retry["method"] == "thread/resume"  # the failed step again, never a silent wait

    protocol = CodexProtocol(CodexSessionOptions(cwd="/srv/project"))
    _start(protocol)
    protocol.feed(orjson.dumps({"id": 1, "result": {"thread": {"id": "th-1"}, "model": "m"}}))
    error = {"code": -32600, "message": "thread not found: th-1"}
    items, _ = protocol.feed(orjson.dumps({"id": 2, "error": error}))
    assert [n.kind for n in items] == ["error", "turn_end"]
    assert items[1].is_error and "thread not found" in items[1].text
    assert protocol.prompt("again") != []  # the thread takes the next prompt


@pytest.mark.parametrize(
    "line",
    [b"this is not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"{", b"null", b'{"id": 5}'],
)
def test_garbage_is_unknown_and_never_raises(line: bytes) -> None:
    protocol = CodexProtocol(CodexSessionOptions())
    items, lines = protocol.feed(line)
    assert [n.kind for n in items] == ["unknown"]
    assert lines == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(["id", "method", "params", "result", "error", "item", "turn", "threadId"])
_methods = st.sampled_from(
    [
        "item/started",
        "item/completed",
        "turn/completed",
        "error",
        "thread/tokenUsage/updated",
        "item/agentMessage/delta",
        "turn/plan/updated",
        "item/fileChange/requestApproval",
        "x/y",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.dictionaries(_keys, _json, max_size=4),
            st.fixed_dictionaries({"method": _methods, "params": _json}, optional={"id": _json}),
        ),
        max_size=6,
    )
)
def test_feed_never_raises(lines: list[Any]) -> None:
    protocol = CodexProtocol(CodexSessionOptions(cwd="/w"))
    protocol.opening("hi")
    for line in lines:
        raw = line if isinstance(line, bytes) else json.dumps(line).encode()
        items, replies = protocol.feed(raw)
        assert all(isinstance(n, Normalized) for n in items)
        assert all(r.endswith(b"\n") and r.count(b"\n") == 1 for r in replies)
    protocol.close_open()


def test_blank_lines_are_nothing() -> None:
    assert CodexProtocol(CodexSessionOptions()).feed(b"  \n") == ([], [])


def test_a_non_json_line_keeps_its_text() -> None:
    (item,), _ = CodexProtocol(CodexSessionOptions()).feed(b"Failed to deserialize\n")
    assert item.kind == "unknown" and item.text == "Failed to deserialize"
    assert item.raw == {"unparsed": "Failed to deserialize"}


# ------------------------------------------------------------------ server requests


@pytest.mark.parametrize("method", sorted(DECLINES))
def test_every_declined_request_answers_in_its_schema_shape(method: str) -> None:
    from corral.supervisor.providers.codex.items import Transcript

    result, error, note = decline(method, {"command": "/bin/bash -lc 'ls'"}, Transcript())
    assert error is None and note is not None and note.startswith("Declined")
    problems = errors(_response_definition(method), result)
    assert not problems, (method, result, problems)


def test_every_server_request_in_the_schema_is_answered() -> None:
    """Approval requests wait for a person (``test_codex_approvals.py``); every other
    server request is answered at once."""
    from corral.supervisor.providers.codex.items import Transcript

    methods = set()
    for variant in schema()["definitions"]["ServerRequest"]["oneOf"]:
        (method,) = variant["properties"]["method"]["enum"]
        methods.add(method)
        if method in APPROVAL_METHODS:
            continue
        result, error, _ = decline(method, {}, Transcript())
        assert (result is None) != (error is None), method
        if result is not None:
            assert not errors(_response_definition(method), result), method
    assert methods >= APPROVAL_METHODS
    assert not APPROVAL_METHODS & set(DECLINES)  # never declined any more


def test_declines_are_reported_naming_what_was_asked() -> None:
    protocol = CodexProtocol(CodexSessionOptions())
    question = {"questions": [{"id": "q", "header": "h", "question": "Which branch?"}]}
    request = {"method": "item/tool/requestUserInput", "id": 4, "params": question}
    items, lines = protocol.feed(orjson.dumps(request))
    assert [n.text for n in items] == [
        "Declined Codex's request to answer a question: Which branch?: corral does not answer "
        "this Codex request yet."
    ]
    assert orjson.loads(lines[0]) == {"id": 4, "result": {"answers": {}}}
    legacy = {"method": "execCommandApproval", "id": 5, "params": {"command": ["rm", "x"]}}
    items, lines = protocol.feed(orjson.dumps(legacy))
    assert [n.text for n in items] == [
        "Declined Codex's request to run `rm x`: corral does not answer this Codex request yet."
    ]
    assert orjson.loads(lines[0])["result"]["decision"] == {
        "denied": {"rejection": "corral does not answer this Codex request yet"}
    }


def test_an_unknown_server_request_gets_an_error_answer() -> None:
    protocol = CodexProtocol(CodexSessionOptions())
    items, lines = protocol.feed(b'{"method": "new/thing", "id": 7, "params": {}}')
    (answer,) = [orjson.loads(line) for line in lines]
    assert answer["id"] == 7 and answer["error"]["code"] == -32601
    assert [n.kind for n in items] == ["system"]


def test_current_time_is_answered_not_declined() -> None:
    protocol = CodexProtocol(CodexSessionOptions())
    items, lines = protocol.feed(b'{"method": "currentTime/read", "id": 3, "params": {}}')
    assert items == []
    assert isinstance(orjson.loads(lines[0])["result"]["currentTimeAt"], int)


# ------------------------------------------------------------------ every recording


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_recording_replays_with_schema_valid_lines(name: str) -> None:
    result = replay(name)
    assert result.processes
    for msg in result.written:
        if "method" in msg:
            check_request(msg)
    for p in result.processes:
        for request, answer in p.answers:
            assert answer["id"] == request["id"]
            if "result" in answer:
                problems = errors(_response_definition(request["method"]), answer["result"])
                assert not problems, (request["method"], problems)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_started_process_says_init_once_with_the_thread(name: str) -> None:
    result = replay(name)
    for p in result.processes:
        inits = [n for n in p.items if n.kind == "init"]
        if name == "protocol_errors":
            assert inits == []  # the recorder never started a thread after initialize
            continue
        assert len(inits) == 1
        assert inits[0].provider_session_id == p.protocol.thread_id
        assert inits[0].model == "gpt-5.5"
        assert inits[0].cwd == result.meta["cwd"]


def test_resume_continues_the_same_thread() -> None:
    for name in ("resume", "resume_exclude_turns"):
        first, second = replay(name).processes
        assert second.protocol.thread_id == first.protocol.thread_id
        resume = [m for m in second.written if m.get("method") == "thread/resume"]
        assert resume and resume[0]["params"]["excludeTurns"] is True


def test_protocol_errors_become_errors_without_raising() -> None:
    items = replay("protocol_errors").items
    texts = [n.text for n in items if n.kind == "error"]
    assert any("Not initialized" in t for t in texts)
    assert any("Already initialized" in t for t in texts)
    assert any("requires experimentalApi capability" in t for t in texts)
