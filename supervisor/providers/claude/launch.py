"""How corral launches Claude Code: binary discovery, argv and environment.

Pure functions only (apart from a bounded ``claude --version`` probe): the
session actor spawns the process. The CLI is always driven in print mode with
stream-json on both stdin and stdout, so one process serves many turns.

Values never become flags: every value a client chooses is passed as one
``--flag=value`` argument, which the CLI's parser takes as that option's value
whatever it starts with (a ``--flag value`` pair is not safe: ``--worktree
[name]`` takes its value only when it does not start with ``-``, so
``--worktree -h`` prints the help). Only corral's constants and plain ids
(letters, digits, ``._-``, not ``-`` first) stand alone.
:func:`check_launch_options` refuses, before launch, a model or worktree name
outside their patterns and directories that are not absolute existing ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.protocol import shapes
from corral.protocol.errors import InvalidParams
from corral.protocol.shapes import MODEL_NAME_PATTERN
from corral.supervisor.providers.binaries import binary_version, find_binary

#: Environment variable naming the Claude Code binary (after the configured one).
BINARY_ENV = "CORRAL_CLAUDE_BIN"

#: Permission modes in which the CLI may ask before a tool call. In them corral adds
#: ``--permission-prompt-tool=stdio``, so a prompt reaches a person (an approval)
#: instead of being denied silently; ``bypassPermissions`` never asks.
ASKING_MODES: frozenset[str] = frozenset({"default", "acceptEdits", "plan"})

#: Well-known install locations, searched after PATH (``~`` is the env's HOME).
FALLBACK_LOCATIONS: tuple[str, ...] = (
    "~/.local/bin/claude",
    "~/.claude/local/claude",
    "/usr/local/bin/claude",
    "/usr/bin/claude",
)

#: Variables a running Claude Code session sets for its child processes. Inherited
#: by a new CLI they make it believe it is nested inside another session (child
#: session, another session's id, sockets and IDE port), so they are dropped.
NESTING_ENV_VARS: frozenset[str] = frozenset(
    {
        "CLAUDECODE",
        "CLAUDE_CODE_ENTRYPOINT",
        "CLAUDE_CODE_SSE_PORT",
        "CLAUDE_CODE_SESSION_ID",
        "CLAUDE_CODE_CHILD_SESSION",
        "CLAUDE_CODE_CHILD_NOTES_DIR",
        "CLAUDE_CODE_SESSION_ATTENDED",
        "CLAUDE_CODE_LAUNCHED_BY_SESSION_IDS",
        "CLAUDE_CODE_EXECPATH",
        "CLAUDE_CODE_MESSAGING_SOCKET",
        "CLAUDE_CODE_MESSAGING_TOKEN",
        "CLAUDE_CODE_BRIDGE_SESSION_ID",
        "CLAUDE_CODE_BRIDGE_CHILD_HELD_TO_AUTO",
        "CLAUDE_CODE_HOST_WORKTREE",
        "CLAUDE_CODE_HOST_WORKTREE_FENCE",
        "CLAUDE_CODE_EVAL_INTERVIEW_SESSION",
        "CLAUDE_CODE_CHROME_MCP_ORG_DENIED",
        "CLAUDE_PID",
        "CLAUDE_EFFORT",
        "AI_AGENT",
    }
)

#: Never inherited from the daemon's own environment: it lets bypassPermissions run
#: as root, so only the operator's or the client's explicit env may set it.
NOT_INHERITED_ENV_VARS: frozenset[str] = frozenset({"IS_SANDBOX"})


def find_claude_binary(
    configured: str | None, env: Mapping[str, str]
) -> tuple[str | None, list[str]]:
    """Locate the ``claude`` executable.

    Order: ``configured``, ``$CORRAL_CLAUDE_BIN``, each ``PATH`` entry of ``env``,
    then :data:`FALLBACK_LOCATIONS`. Returns the first executable found (or
    ``None``) and every place searched, in order, for error messages.
    """
    return find_binary("claude", configured, BINARY_ENV, env, FALLBACK_LOCATIONS)


def claude_version(binary: str, timeout: float = 5.0) -> str | None:
    """``binary --version`` (e.g. ``"2.1.332 (Claude Code)"``), or None if it fails."""
    return binary_version(binary, timeout)


@dataclass
class ClaudeLaunchOptions:
    """What a session asks of the Claude CLI; unset fields add no flag."""

    model: str | None = None
    permission_mode: str | None = None
    max_turns: int | None = None
    system_prompt: str | None = None
    #: pass ``system_prompt`` as ``--append-system-prompt`` instead of replacing it
    append_system_prompt: bool = False
    additional_directories: list[str] = field(default_factory=list)
    worktree_name: str | None = None
    claude_config_dir: str | None = None
    #: continue this provider session (``--resume``); wins over ``session_id``
    resume_session_id: str | None = None
    #: a fresh session's id chosen up front (``--session-id``, a UUID)
    session_id: str | None = None
    #: in an asking mode (:data:`ASKING_MODES`), send permission prompts to stdout as
    #: ``can_use_tool`` control requests (``--permission-prompt-tool=stdio``) and
    #: wait for the answer on stdin; False keeps the CLI's silent denial
    permission_prompts: bool = True


#: A model name or alias: ``sonnet``, ``opus[1m]``, ``claude-sonnet-4-5-20250929``,
#: a Bedrock ARN or Vertex ``name@version``. Never starts with ``-``.
MODEL_PATTERN = re.compile(MODEL_NAME_PATTERN.rstrip("*$") + "{0,255}")
#: A worktree name (Claude Code makes ``.claude/worktrees/<name>`` and a branch of it):
#: no ``-`` first, no path separator, so it stays one directory under the project.
WORKTREE_NAME_PATTERN = re.compile(shapes.WORKTREE_NAME_PATTERN)


def _absolute_dir(value: str, field_name: str) -> None:
    if not (os.path.isabs(value) and os.path.isdir(value)):
        raise InvalidParams(
            f"{field_name} must be an existing absolute directory", field=field_name
        )


def check_launch_options(opts: ClaudeLaunchOptions) -> None:
    """Refuse (InvalidParams naming the field) what the CLI must not be given: a
    model or worktree name outside :data:`MODEL_PATTERN` /
    :data:`WORKTREE_NAME_PATTERN`, or an ``additionalDirectories`` entry or a
    ``claudeConfigDir`` that is not an existing absolute directory."""
    if opts.model is not None and not MODEL_PATTERN.fullmatch(opts.model):
        raise InvalidParams(
            "model must be a model name: letters, digits and ._:/@+[]- , not starting "
            "with - (at most 256 characters)",
            field="model",
        )
    if opts.worktree_name is not None and not WORKTREE_NAME_PATTERN.fullmatch(opts.worktree_name):
        raise InvalidParams(
            "worktreeName must be letters, digits and ._- , not starting with . or - "
            "(at most 128 characters)",
            field="worktreeName",
        )
    for index, directory in enumerate(opts.additional_directories):
        _absolute_dir(directory, f"additionalDirectories.{index}")
    if opts.claude_config_dir is not None:
        _absolute_dir(opts.claude_config_dir, "claudeConfigDir")


#: An id that cannot be taken for a flag (a UUID is one); such ids may stand alone.
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")


def _id_args(flag: str, value: str) -> list[str]:
    """``[flag, value]`` for a plain id (what a session id always is), else the
    joined ``flag=value``: an id a provider reported is not trusted to be plain."""
    return [flag, value] if _PLAIN_ID.fullmatch(value) else [f"{flag}={value}"]


def build_argv(binary: str, opts: ClaudeLaunchOptions) -> list[str]:
    """The argv for a multi-turn stream-json Claude process.

    Every value a client chooses is joined to its flag (``--model=VALUE``), so no
    value can become a flag; only corral's own constants and plain ids stand alone.
    In a mode that can ask, permission prompts come over stdio (see
    :attr:`ClaudeLaunchOptions.permission_prompts`).
    """
    argv = [
        binary,
        "-p",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--verbose",
    ]
    if opts.model:
        argv.append(f"--model={opts.model}")
    if opts.permission_mode:
        argv.append(f"--permission-mode={opts.permission_mode}")
    if opts.permission_prompts and opts.permission_mode in ASKING_MODES:
        argv.append("--permission-prompt-tool=stdio")
    if opts.max_turns is not None:
        argv.append(f"--max-turns={opts.max_turns}")
    if opts.system_prompt:
        flag = "--append-system-prompt" if opts.append_system_prompt else "--system-prompt"
        argv.append(f"{flag}={opts.system_prompt}")
    for directory in opts.additional_directories:
        argv.append(f"--add-dir={directory}")
    if opts.worktree_name:
        argv.append(f"--worktree={opts.worktree_name}")
    if opts.resume_session_id:
        argv += _id_args("--resume", opts.resume_session_id)
    elif opts.session_id:
        argv += _id_args("--session-id", opts.session_id)
    return argv


def build_env(
    base_env: Mapping[str, str],
    operator_env: Mapping[str, str],
    client_extra_env: Mapping[str, str],
    claude_config_dir: str | None,
) -> dict[str, str]:
    """The Claude process environment.

    ``base_env`` (the daemon's own) minus :data:`NESTING_ENV_VARS` and
    :data:`NOT_INHERITED_ENV_VARS`, then ``operator_env`` (trusted settings such
    as ``ANTHROPIC_BASE_URL``), then the client's already-filtered extra env,
    then ``CLAUDE_CONFIG_DIR`` when given. Later layers win.
    """
    dropped = NESTING_ENV_VARS | NOT_INHERITED_ENV_VARS
    env = {key: value for key, value in base_env.items() if key not in dropped}
    env.update(operator_env)
    env.update(client_extra_env)
    if claude_config_dir:
        env["CLAUDE_CONFIG_DIR"] = claude_config_dir
    return env
