"""Generate the reference part of ``docs/protocol.md`` from the definitions (a
development tool: not part of the installed package).

The tables are built from what the daemon enforces: method and event schemas
(:mod:`protocol.methods`, :mod:`protocol.events`), error classes
(:mod:`protocol.errors`), envelope limits (:mod:`protocol.envelope`), settings
(:mod:`actors.settings`), the session state machine (:mod:`actors.state`) and
the providers (their summary, ``doc.md`` and ``providerConfig`` JSON Schema, from
the provider registry). The few words written here (what an error means, what
a setting does) are checked for coverage, and
the stated settings ranges are probed against the real validators, so the
documentation cannot silently drift from the code.

Usage::

    python -m tests.support.docgen                          # print the markdown
    python -m tests.support.docgen --check docs/protocol.md  # exit 1 if stale
    python -m tests.support.docgen --write docs/protocol.md  # rewrite the block

The generated block of a document sits between :data:`START` and :data:`END`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from corral.actors import settings as settings_mod
from corral.actors import state
from corral.protocol import PROTOCOL_VERSION, envelope
from corral.protocol import events as event_defs
from corral.protocol import methods as method_defs
from corral.protocol.errors import ALL_ERRORS
from corral.supervisor.providers.registry import provider_classes

__all__ = ["END", "START", "DocDrift", "check_file", "extract", "generate", "main", "splice"]

START = "<!-- generated:start -->"
END = "<!-- generated:end -->"


class DocDrift(RuntimeError):
    """The hand-written words of this module no longer match the code."""


# --------------------------------------------------------------------------- words

ERROR_WHEN: dict[str, str] = {
    "parse_error": "the request frame is not UTF-8 JSON (`id` is null)",
    "invalid_request": (
        'not a JSON-RPC 2.0 request object (`jsonrpc` not `"2.0"`, bad `id`, `method` '
        "missing or not a string, `params` neither an object nor an array, unknown "
        "member), an empty batch or one of more than "
        '{max_batch} entries, or a frame layout other than `[request]` / `["", request]`'
    ),
    "too_large": "the request frame is larger than {max_bytes} (`id` is null)",
    "method_not_found": "the method does not exist",
    "invalid_params": (
        "a param is missing, unknown, of the wrong type, out of range or refused by a "
        "provider or setting validator; `data.field` names the first bad field"
    ),
    "internal_error": "a bug in corral; the daemon logs it and keeps running",
    "no_session": "the project has no current session",
    "session_running": (
        "the project's current session (or the named session) is running or starting; "
        "`agent.start` adds `data.sessionId`"
    ),
    "start_in_progress": "a start for this project is still in flight",
    "provider_unavailable": (
        "the provider cannot run: not installed, disabled in `provider_settings`, not "
        "supported by this version, or its process failed to launch; `data.detail` says why"
    ),
    "not_found": "no stored session has this `sessionId`",
    "overloaded": (
        "`max_live_sessions` is reached, or too many requests are in flight; retry later"
    ),
    "shutting_down": (
        "the daemon is stopping: `agent.start`, `agent.prompt` and `session.restore` are refused"
    ),
}
"""What each error reason means (every reason of :data:`protocol.errors.ALL_ERRORS`)."""

SETTINGS_MEANING: dict[str, str] = {
    "permission_mode": "`permissionMode` of a start that does not pass one",
    "system_prompt_template": "`systemPrompt` of a start that does not pass one (empty: none)",
    "default_cwd": "`cwd` of a start that does not pass one (empty: the daemon user's home)",
    "provider_settings": (
        "per provider: `enabled` (false: starts answer `provider_unavailable`), "
        "`defaultModel` (the model of a start without `model`), `config` (operator "
        "options; claude reads `bin`, its binary, and `env`, a string → string "
        "environment added to its process; every provider reads `contextLimits`, model name "
        "→ tokens, which overrides the table behind Health's `contextLimit`)"
    ),
    "session_retention_count": "stored sessions kept per project, newest first",
    "session_retention_days": "stored sessions not updated for this many days are deleted",
    "stall_timeout_ms": "a running session with no output for this long is reported stalled",
    "cleanup_grace_ms": "an ended session stays the project's current one this long",
    "max_live_sessions": "most live sessions; a start beyond it answers `overloaded`",
    "approval_timeout_ms": (
        "a pending approval not answered within this time is denied (`by: timeout`); "
        "0: wait for a person for ever"
    ),
    "desktop_notifications": (
        "`on`: notifications also go to the desktop's notification service (freedesktop, "
        "on the session D-Bus) when there is one; `off`: never"
    ),
}
"""What each setting does (every key of :data:`actors.settings.DEFAULTS`)."""

SETTINGS_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "session_retention_count": (1, 50),
    "session_retention_days": (1, 365),
    "stall_timeout_ms": (1000, None),
    "cleanup_grace_ms": (0, None),
    "max_live_sessions": (1, 10000),
    "approval_timeout_ms": (0, None),
}
"""Integer settings and their bounds, probed against the validators at generation."""

SETTINGS_ALLOWED_TEXT: dict[str, str] = {
    "system_prompt_template": "any text, at most 4 KiB",
    "default_cwd": "empty, or an absolute path of an existing directory",
    "provider_settings": (
        'JSON object: provider → `{"enabled"?: bool, "defaultModel"?: string, "config"?: object}`'
    ),
    "desktop_notifications": "`on` or `off`",
}
"""Allowed values of the settings that are neither integers nor permission modes."""

STATE_EVENTS: dict[str, str] = {
    "START": "the provider process is launched for a prompt (first prompt, or a resume)",
    "PROMPT": "a prompt is sent to the session (while running: a queued follow-up)",
    "TURN_DONE": "the provider ended the turn successfully",
    "TURN_FAILED": "the provider ended the turn with an error",
    "STOPPED": "a stop was asked for and the turn ended",
    "PROCESS_EXITED": "the provider process exited with code 0",
    "PROCESS_CRASHED": "the provider process died, was killed or failed to launch",
    "RESTORED": "`session.restore` made a stored session current again",
    "INTERRUPTED": (
        "the daemon stopped while the session was running (a daemon that died is "
        "noticed at the next start)"
    ),
    "STORAGE_FAILED": (
        "a step of the session could not be stored (a full disk): its provider is "
        "stopped and the session ends with `database write failed: disk full`"
    ),
    "TURN_STARTED": (
        "the provider's stream shows a turn it started itself after the last one "
        "ended: the session is running until that turn's end"
    ),
}
"""What each state machine event means (every :class:`actors.state.SessionEvent`)."""

FRAME_MEMBERS: dict[str, str] = {
    "event": "the event name",
    "boot": "the daemon run that published it (see `daemon.ping`)",
    "eseq": "1, 2, 3, … over every event of one daemon run, all topics together",
    "ts": "publication time, milliseconds since the Unix epoch",
    "projectId": "the project, on project events",
    "data": "the event's data (below)",
}
"""The members of an event frame."""

SHAPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("AgentMessage", method_defs.AGENT_MESSAGE),
    ("Session", method_defs.SESSION),
    ("Notification", method_defs.NOTIFICATION),
    ("Health", method_defs.HEALTH),
    ("Conflict", method_defs.CONFLICT),
)
"""Named data shapes: referred to by name wherever they appear."""


# --------------------------------------------------------------------------- rendering


def _cell(text: str) -> str:
    """Text made safe for one markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code(value: str) -> str:
    return f"`{value}`"


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


PATTERN_WORDS: dict[str, str] = {
    r"^[^\x00]*$": "no NUL character",
}
"""Patterns better said in words."""


def _num(n: object) -> str:
    if n == 2**63 - 1:
        return "2^63-1"
    return str(n)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _anchor(name: str) -> str:
    """The GitHub heading anchor of a heading that is ``name`` in backticks."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_ ").replace(" ", "-")


def _shape_name(schema: Mapping[str, Any]) -> str | None:
    types = schema.get("type")
    for name, shape in SHAPES:
        link = f"[{name}](#{_anchor(name)})"
        if schema == shape:
            return link
        if isinstance(types, list) and "null" in types:
            rest = [t for t in types if t != "null"]
            plain = {**schema, "type": rest[0] if len(rest) == 1 else rest}
            if plain == shape:
                return f"{link} or null"
    return None


def _type(schema: Mapping[str, Any] | None) -> str:
    """A short human type: ``string``, ``array of Session``, ``object (string → integer)``."""
    if schema is None:
        return "any"
    shape = _shape_name(schema)
    if shape is not None:
        return shape
    if "const" in schema:
        return _code(_json(schema["const"]))
    declared = schema.get("type")
    if declared is None:
        return "any"
    names = [declared] if isinstance(declared, str) else list(declared)
    parts: list[str] = []
    for name in names:
        if name == "array":
            items = schema.get("items")
            parts.append(f"array of {_type(items)}" if isinstance(items, Mapping) else "array")
        elif name == "object":
            extra = schema.get("additionalProperties")
            if isinstance(extra, Mapping) and not schema.get("properties"):
                parts.append(f"object (string → {_type(extra)})")
            else:
                parts.append("object")
        else:
            parts.append(name)
    return " or ".join(parts)


def _limits(schema: Mapping[str, Any], *, brief: bool = False) -> list[str]:
    """The constraints of ``schema`` in words (``brief``: without patterns)."""
    out: list[str] = []
    if "enum" in schema and _shape_name(schema) is None:
        options = [o for o in schema["enum"] if o is not None]
        out.append("one of " + ", ".join(_code(str(o)) for o in options))
    min_len = schema.get("minLength")
    if min_len == 1:
        out.append("non-empty")
    elif min_len is not None:
        out.append(f"at least {min_len} characters")
    if "maxLength" in schema:
        out.append(f"at most {schema['maxLength']} characters")
    if "maxBytes" in schema:
        out.append(f"at most {_size(schema['maxBytes'])}")
    pattern = schema.get("pattern")
    if pattern in PATTERN_WORDS:
        out.append(PATTERN_WORDS[pattern])
    elif pattern is not None and not brief:
        out.append(f"matches {_code(pattern)}")
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None and hi is not None:
        out.append(f"{_num(lo)}..{_num(hi)}")
    elif lo is not None:
        out.append(f"≥ {_num(lo)}")
    elif hi is not None:
        out.append(f"≤ {_num(hi)}")
    if "minItems" in schema:
        out.append(f"at least {schema['minItems']} items")
    if "maxItems" in schema:
        out.append(f"at most {schema['maxItems']} items")
    if "maxProperties" in schema:
        out.append(f"at most {schema['maxProperties']} members")
    if not brief:
        names = schema.get("propertyNames")
        if isinstance(names, Mapping) and _limits(names):
            out.append("names: " + ", ".join(_limits(names)))
        items = schema.get("items")
        if isinstance(items, Mapping) and _shape_name(items) is None and _limits(items):
            out.append("items: " + ", ".join(_limits(items)))
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and _shape_name(extra) is None and _limits(extra):
            out.append("values: " + ", ".join(_limits(extra)))
    if "default" in schema:
        out.append(f"default {_json(schema['default'])}")
    return out


def _members(
    schema: Mapping[str, Any], prefix: str = ""
) -> list[tuple[str, Mapping[str, Any], bool]]:
    """(dotted name, schema, required) of an object's members, nested objects expanded.

    Named shapes are not expanded; a map whose values are objects with members
    is expanded as ``name.<key>.member``.
    """
    rows: list[tuple[str, Mapping[str, Any], bool]] = []
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append((path, sub, name in required))
        if _shape_name(sub) is not None:
            continue
        if sub.get("type") == "object" and sub.get("properties"):
            rows.extend(_members(sub, f"{path}."))
        extra = sub.get("additionalProperties")
        if (
            sub.get("type") == "object"
            and isinstance(extra, Mapping)
            and extra.get("properties")
            and _shape_name(extra) is None
        ):
            rows.extend(_members(extra, f"{path}.<key>."))
    return rows


def _fields_inline(schema: Mapping[str, Any]) -> str:
    """``a``: type, ``b``?: type (``?`` marks optional members)."""
    shape = _shape_name(schema)
    if shape is not None:
        return f"a {shape}"
    required = set(schema.get("required", ()))
    parts = []
    for name, sub in schema.get("properties", {}).items():
        mark = "" if name in required else "?"
        parts.append(f"{_code(name)}{mark}: {_type(sub)}")
    return ", ".join(parts) if parts else "—"


# --------------------------------------------------------------------------- sections


def _methods() -> list[str]:
    generic = ", ".join(_code(r) for r in method_defs.GENERIC_ERRORS)
    out = [
        "### Methods",
        "",
        f"Protocol version {PROTOCOL_VERSION}. A `?` marks an optional param. Besides the "
        f"errors listed per method, any request may be answered with {generic}.",
        "",
    ]
    rows = []
    for name, spec in method_defs.METHODS.items():
        required = set(spec.params.get("required", ()))
        params = []
        for pname, sub in spec.params.get("properties", {}).items():
            mark = "" if pname in required else "?"
            words = ", ".join([_type(sub), *_limits(sub, brief=True)])
            params.append(f"{_code(pname)}{mark}: {words}")
        result = "{" + ", ".join(spec.result.get("properties", {})) + "}"
        rows.append(
            [
                f"[{_code(name)}](#{_anchor(name)})",
                "<br>".join(params) or "—",
                _code(result),
                ", ".join(_code(e) for e in spec.errors) or "—",
            ]
        )
    out += _table(["method", "params", "result", "errors"], rows)
    for name, spec in method_defs.METHODS.items():
        out += ["", f"#### {_code(name)}", "", spec.summary, ""]
        members = _members(spec.params)
        if members:
            out += _table(
                ["param", "type", "required", "constraints", "description"],
                (
                    [
                        _code(p),
                        _type(sub),
                        "yes" if req else "no",
                        ", ".join(_limits(sub)) or "—",
                        str(sub.get("description", "")),
                    ]
                    for p, sub, req in members
                ),
            )
        else:
            out.append("Params: none (omit `params`, or send `{}` or null).")
        out += ["", "Result:", ""]
        out += _table(
            ["member", "type", "description"],
            (
                [_code(p), _type(sub), str(sub.get("description", ""))]
                for p, sub, _req in _members(spec.result)
            ),
        )
        if spec.errors:
            out += ["", "Errors: " + ", ".join(_code(e) for e in spec.errors) + "."]
    return out


def _errors() -> list[str]:
    missing = {cls.reason for cls in ALL_ERRORS} - set(ERROR_WHEN)
    if missing:
        raise DocDrift(f"ERROR_WHEN has no words for {sorted(missing)}")
    listed: dict[str, list[str]] = {}
    for name, spec in method_defs.METHODS.items():
        for reason in spec.errors:
            listed.setdefault(reason, []).append(name)
    rows = []
    for cls in ALL_ERRORS:
        when = ERROR_WHEN[cls.reason].format(
            max_batch=envelope.MAX_BATCH, max_bytes=_size(envelope.MAX_REQUEST_BYTES)
        )
        if cls.reason in method_defs.GENERIC_ERRORS:
            where = "any"
        else:
            where = ", ".join(_code(m) for m in listed.get(cls.reason, ())) or "—"
        rows.append([str(cls.code), _code(cls.reason), when, where])
    return [
        "### Errors",
        "",
        "`error.data.reason` is the stable name of an error; `error.message` is for "
        "people. `too_large` shares the code of `invalid_request`.",
        "",
        *_table(["code", "reason", "when", "methods"], rows),
    ]


def _shapes() -> list[str]:
    out = ["### Data shapes", ""]
    for name, shape in SHAPES:
        about = str(shape.get("description", "")).removeprefix(f"{name}: ")
        out += [f"#### {name}", ""]
        if about and about != name:
            out += [about[:1].upper() + about[1:] + ".", ""]
        out += _table(
            ["field", "type", "required", "constraints", "description"],
            (
                [
                    _code(p),
                    _type(sub),
                    "yes" if req else "no",
                    ", ".join(_limits(sub)) or "—",
                    str(sub.get("description", "")),
                ]
                for p, sub, req in _members(shape)
            ),
        )
        out.append("")
    return out[:-1]


def _events() -> list[str]:
    frame = event_defs.EVENT_FRAME
    missing = set(frame["properties"]) ^ set(FRAME_MEMBERS)
    if missing:
        raise DocDrift(f"FRAME_MEMBERS does not match the event frame: {sorted(missing)}")
    frame_rows = [
        [_code(p), _type(sub), "yes" if req else "no", FRAME_MEMBERS[p]]
        for p, sub, req in _members(frame)
    ]
    rows = []
    for name, schema in event_defs.EVENTS.items():
        if name in event_defs.DAEMON_EVENTS:
            topic = event_defs.daemon_topic(name)
        else:
            topic = event_defs.project_topic("<projectId>", name)
        rows.append([_code(name), _code(topic), _fields_inline(schema)])
    return [
        "### Events",
        "",
        "Every event is two frames: the topic, then the event frame:",
        "",
        *_table(["member", "type", "required", "description"], frame_rows),
        "",
        "Events, their topics and their `data` (a `?` marks an optional member):",
        "",
        *_table(["event", "topic", "data"], rows),
    ]


def _probe(key: str, value: str) -> bool:
    try:
        settings_mod.VALIDATORS[key](value)
    except ValueError:
        return False
    return True


def _settings_allowed(key: str) -> str:
    if key in SETTINGS_INT_RANGES:
        lo, hi = SETTINGS_INT_RANGES[key]
        ok = _probe(key, str(lo)) and not _probe(key, str(lo - 1))
        ok = ok and (
            _probe(key, str(hi)) and not _probe(key, str(hi + 1))
            if hi is not None
            else _probe(key, str(10**12))
        )
        if not ok:
            raise DocDrift(f"the documented range of {key} is not what its validator accepts")
        return f"integer {lo}..{hi}" if hi is not None else f"integer ≥ {lo}"
    if key == "permission_mode":
        modes = settings_mod.PERMISSION_MODES
        if not all(_probe(key, m) for m in modes) or _probe(key, "nope"):
            raise DocDrift("permission_mode does not accept exactly PERMISSION_MODES")
        return "one of " + ", ".join(_code(m) for m in modes)
    if key not in SETTINGS_ALLOWED_TEXT:
        raise DocDrift(f"no allowed-values text for setting {key}")
    return SETTINGS_ALLOWED_TEXT[key]


def _settings() -> list[str]:
    keys = list(settings_mod.DEFAULTS)
    for what, other in (
        ("the validators", settings_mod.VALIDATORS),
        ("SETTINGS_MEANING", SETTINGS_MEANING),
        ("the settings.set schema", dict.fromkeys(method_defs.SETTINGS_KEYS)),
    ):
        if set(other) != set(keys):
            raise DocDrift(f"settings keys differ between DEFAULTS and {what}")
    rows = [
        [
            _code(key),
            _code(_json(settings_mod.DEFAULTS[key])),
            _settings_allowed(key),
            SETTINGS_MEANING[key],
        ]
        for key in keys
    ]
    return [
        "### Settings",
        "",
        "Values are strings on the wire (`settings.getAll`, `settings.set`); integers are "
        "written in decimal.",
        "",
        *_table(["key", "default", "allowed values", "effect"], rows),
    ]


def _config_rows(schema: Mapping[str, Any]) -> list[list[str]]:
    """One row per ``providerConfig`` key: key, type, range, default, effect."""
    rows = []
    for key, prop in schema.get("properties", {}).items():
        kind = prop.get("type", "any")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        low, high = prop.get("minimum"), prop.get("maximum")
        bounds = f"{low}..{high}" if low is not None and high is not None else "—"
        default = _code(_json(prop["default"])) if "default" in prop else "—"
        if not prop.get("description"):
            raise DocDrift(f"providerConfig key {key} has no description")
        rows.append([_code(key), kind, bounds, default, prop["description"]])
    return rows


def _providers() -> list[str]:
    classes = provider_classes()
    if tuple(classes) != method_defs.PROVIDERS:
        raise DocDrift("the loaded providers differ from the registered names")
    out = [
        "### Providers",
        "",
        "Providers are plugins found through the `corral.providers` entry points.",
        "",
        *_table(
            ["provider", "in this version"], [[_code(n), c.summary] for n, c in classes.items()]
        ),
    ]
    for name, cls in classes.items():
        doc = cls.doc().strip()
        rows = _config_rows(cls.schema())
        if doc:
            out += ["", f"#### `{name}`", "", doc]
        if rows:
            out += [
                "",
                f"#### `{name}` providerConfig",
                "",
                "All keys are optional; an unknown key or a value out of range is "
                "`invalid_params` with `data.field` = `providerConfig.<key>`.",
                "",
                *_table(["key", "type", "range", "default", "effect"], rows),
            ]
    return out


def _state_machine() -> list[str]:
    names = {e.name for e in state.SessionEvent}
    if names != set(STATE_EVENTS):
        raise DocDrift("STATE_EVENTS does not cover exactly the state machine's events")
    return [
        "### Session status state machine",
        "",
        "Rows: what happened; columns: the status before; cells: the status after "
        "(`-`: cannot happen, the status is kept).",
        "",
        state.describe_table(),
        "",
        *_table(
            ["event", "meaning"],
            ([_code(e.name), STATE_EVENTS[e.name]] for e in state.SessionEvent),
        ),
    ]


SECTIONS: tuple[Callable[[], list[str]], ...] = (
    _methods,
    _errors,
    _shapes,
    _events,
    _settings,
    _providers,
    _state_machine,
)


def generate() -> str:
    """The generated reference, in markdown (ends with a newline)."""
    lines: list[str] = [
        "<!-- This block is generated by `python -m tests.support.docgen`; do not edit it. -->",
        "",
    ]
    for section in SECTIONS:
        lines += section()
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- files


def _bounds(text: str) -> tuple[int, int]:
    """(end of the start marker line, start of the end marker) in ``text``."""
    start = text.find(START)
    end = text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"the document needs {START} ... {END} markers, in this order")
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError("the document must contain each marker exactly once")
    line_end = text.find("\n", start)
    if line_end < 0 or line_end > end:
        raise ValueError(f"{START} must be followed by a newline")
    return line_end + 1, end


def extract(text: str) -> str:
    """The generated block of a document (between the marker lines)."""
    begin, end = _bounds(text)
    return text[begin:end]


def splice(text: str, block: str) -> str:
    """``text`` with its generated block replaced by ``block``."""
    begin, end = _bounds(text)
    return text[:begin] + block + text[end:]


def check_file(path: Path) -> bool:
    """Whether the generated block of ``path`` is up to date."""
    return extract(path.read_text(encoding="utf-8")) == generate()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.docgen",
        description="Generate the reference tables of corral's protocol document.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="FILE", help="exit 1 if FILE's generated block is stale")
    mode.add_argument("--write", metavar="FILE", help="rewrite FILE's generated block in place")
    args = parser.parse_args(argv)
    if args.check is None and args.write is None:
        sys.stdout.write(generate())
        return 0
    path = Path(args.check or args.write)
    try:
        text = path.read_text(encoding="utf-8")
        current = extract(text)
    except (OSError, ValueError) as exc:
        print(f"docgen: {path}: {exc}", file=sys.stderr)
        return 1
    block = generate()
    if args.check is not None:
        if current != block:
            print(
                f"docgen: {path}: the generated block is out of date; run "
                f"python -m tests.support.docgen --write {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != block:
        path.write_text(splice(text, block), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
