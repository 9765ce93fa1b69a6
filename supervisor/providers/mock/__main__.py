"""``python -m corral.supervisor.providers.mock``: the mock agent program.

Parses the command line, loads a saved session for ``--resume``, and runs a
:class:`~corral.supervisor.providers.mock.agent.MockAgent` with a stdin reader
thread. Only the standard library is imported, to keep start-up fast.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import threading
import uuid
from typing import Any, NoReturn

from corral.supervisor.providers.mock.agent import DEFAULT_MODEL, SESSION_ID_RE, MockAgent
from corral.supervisor.providers.mock.config import validate_config
from corral.supervisor.providers.mock.permissions import PERMISSION_MODES

# ---------------------------------------------------------------------------
# stdin


def _stdin_reader(events: queue.Queue[tuple[Any, ...]]) -> None:
    """Turn stream-json stdin lines into events; runs in a daemon thread."""
    stream = sys.stdin.buffer
    while True:
        try:
            line = stream.readline()
        except (OSError, ValueError):
            line = b""
        if not line:
            events.put(("eof",))
            return
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            sys.stderr.write("mock agent: ignoring a stdin line that is not JSON\n")
            sys.stderr.flush()
            continue
        if not isinstance(obj, dict):
            continue
        kind = obj.get("type")
        if kind == "user":
            message = obj.get("message")
            content = message.get("content") if isinstance(message, dict) else None
            events.put(("user", _content_text(content)))
        elif kind == "control_request":
            request_id = obj.get("request_id")
            request_id = request_id if isinstance(request_id, str) else ""
            request = obj.get("request")
            subtype = request.get("subtype") if isinstance(request, dict) else None
            if subtype == "interrupt":
                events.put(("interrupt", request_id))
            else:
                events.put(("control", request_id, str(subtype)))
        elif kind == "control_response":
            response = obj.get("response")
            if isinstance(response, dict) and isinstance(response.get("request_id"), str):
                events.put(("control_response", response["request_id"], response))


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text" and isinstance(block.get("text"), str):
                    parts.append(block["text"])
                elif block.get("type") == "image":
                    parts.append("[image]")
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# entry point


def _resume_unknown(session_id: str) -> NoReturn:
    message = f"No conversation found with session ID: {session_id}"
    line = {
        "type": "result",
        "subtype": "error_during_execution",
        "duration_ms": 0,
        "duration_api_ms": 0,
        "is_error": True,
        "num_turns": 0,
        "stop_reason": None,
        "session_id": session_id,
        "total_cost_usd": 0,
        "usage": {
            "input_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        },
        "modelUsage": {},
        "permission_denials": [],
        "uuid": str(uuid.uuid4()),
        "errors": [message],
        "result_index": 0,
    }
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _load_state(state_dir: str | None, session_id: str) -> dict[str, Any] | None:
    if not state_dir or not SESSION_ID_RE.match(session_id):
        return None
    path = os.path.join(state_dir, f"{session_id}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m corral.supervisor.providers.mock",
        description="corral's simulated agent (Claude stream-json dialect on stdin/stdout)",
    )
    ident = parser.add_mutually_exclusive_group()
    ident.add_argument("--session-id", help="start a new session with this id")
    ident.add_argument("--resume", help="continue a session saved in --state-dir")
    parser.add_argument("--config", default=None, help="providerConfig as a JSON object")
    parser.add_argument("--state-dir", default=None, help="directory for <session_id>.json")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--cwd", default=None)
    parser.add_argument(
        "--permission-mode",
        choices=PERMISSION_MODES,
        default=None,
        help="as Claude Code's; calls with ask: true ask only in default, plan and acceptEdits",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the mock agent; returns the process exit code."""
    args = _parse_args(argv)
    try:
        raw_config = json.loads(args.config) if args.config else None
        config = validate_config(raw_config)
    except ValueError as exc:
        sys.stderr.write(f"mock agent: invalid --config: {exc}\n")
        return 2

    state: dict[str, Any] | None = None
    if args.resume is not None:
        state = _load_state(args.state_dir, args.resume)
        if state is None:
            _resume_unknown(args.resume)
        session_id = args.resume
    elif args.session_id is not None:
        if not SESSION_ID_RE.match(args.session_id):
            sys.stderr.write(f"Error: Invalid session ID: {args.session_id}\n")
            return 1
        session_id = args.session_id
    else:
        session_id = str(uuid.uuid4())

    cwd = args.cwd or (state or {}).get("cwd") or os.getcwd()
    agent = MockAgent(
        config, session_id, args.model, str(cwd), args.state_dir, state, args.permission_mode
    )

    signal.signal(signal.SIGTERM, lambda *_: os._exit(143))
    signal.signal(signal.SIGINT, agent.on_sigint)
    threading.Thread(target=_stdin_reader, args=(agent.events,), daemon=True).start()
    try:
        return agent.run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # the stdin reader thread may still block in readline(): leave without joining it
    os._exit(code)
