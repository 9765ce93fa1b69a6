"""File conflicts: which files a tool call writes, and which live sessions wrote the same file.

Pure (no actor; the only I/O is resolving paths); the registry feeds it and
publishes what it returns.

**Write paths** (:func:`write_paths`) of the normalized tool calls: ``Write``,
``Edit`` (and its ``new_path`` when it moves a file), ``MultiEdit``, ``Delete``
(``file_path``), ``NotebookEdit`` (``notebook_path``), ``apply_patch`` (its
``*** Add/Update/Delete File:`` and ``*** Move to:`` lines) and ``Bash``: the
command is split with :mod:`shlex` into simple commands at ``&&``, ``||``,
``;``, ``|``, ``&``, parentheses and newlines, and these write: the target of
``>``, ``>>``, ``>|``, ``&>``, ``&>>``, ``>&FILE`` (``2>`` too; ``>&2`` is no
file); ``tee [-a] FILE...``; ``sed -i`` (``-i.bak``, ``-Ei``, ``--in-place``)
files; ``touch FILE...``; ``rm FILE...``; ``cp``/``mv SRC... DEST``: the
destination (``DEST/name`` for an existing directory, several sources or
``-t DIR``), and ``mv`` also its sources. Ignored, never guessed: ``-`` and
options, ``/dev/*``, words with expansions or globs (``$``, backticks, ``*``,
``?``, ``[``, ``{``), relative paths after a ``cd`` to an unknowable place,
heredoc bodies, comments, and a command shlex cannot split. An all-digit word
right before a redirection is its descriptor number. ``cd DIR`` moves what
relative paths resolve against for the rest of the command (until a closing
parenthesis).

**Canonical paths** (:func:`canonical_path`): ``~`` expanded, absolute against
the session's cwd, then :func:`os.path.realpath` (``..`` and symlinks
resolved). A path under a git worktree keeps its worktree: two worktrees of
one repository are two directories, so their files are different files.

**The index** (:class:`ConflictIndex`): a conflict exists while two or more
live sessions (of any projects) wrote one canonical path; it is shown as one
row per project and path (the contract's Conflict). A row *opens* when it first
appears and again, after its project acknowledged it, when a session that had
not written the file before writes it; :meth:`ConflictIndex.record_write`
returns each row that opens, once, for the registry to publish on that
project's topic. Later writes by known sessions publish nothing.
"""

from __future__ import annotations

import builtins
import os
import re
import shlex
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_PATHS_PER_SESSION",
    "MAX_SESSIONS_PER_PATH",
    "ConflictIndex",
    "bash_write_paths",
    "canonical_path",
    "write_paths",
]

MAX_PATHS_PER_SESSION = 2000
"""Paths remembered per session; past it the session's least recently written path is forgotten."""

MAX_SESSIONS_PER_PATH = 32
"""Writers remembered per path; a further session's write of that path is ignored."""

MAX_PATH_CHARS = 4096
"""A longer path is not a path: ignored."""

# -- canonical paths -------------------------------------------------------


def canonical_path(path: object, cwd: str | None) -> str | None:
    """``path`` absolute (against ``cwd``), with ``..`` and symlinks resolved; None if unusable."""
    if not isinstance(path, str) or not path or "\x00" in path or len(path) > MAX_PATH_CHARS:
        return None
    if path.startswith("~"):
        path = os.path.expanduser(path)
        if path.startswith("~"):
            return None
    if not os.path.isabs(path):
        if not cwd or not os.path.isabs(cwd):
            return None
        path = os.path.join(cwd, path)
    return os.path.realpath(path)


# -- tool calls ------------------------------------------------------------

_FILE_KEYS: dict[str, tuple[str, ...]] = {
    "Write": ("file_path",),
    "Edit": ("file_path", "new_path"),
    "MultiEdit": ("file_path",),
    "Delete": ("file_path",),
    "NotebookEdit": ("notebook_path",),
}
_PATCH_LINE = re.compile(r"^\*\*\* (?:Add File|Update File|Delete File|Move to): (.+?)\s*$", re.M)


def write_paths(
    tool_name: str | None, tool_input: Mapping[str, Any] | None, cwd: str | None
) -> list[str]:
    """The canonical paths a normalized tool call writes (empty when none or unknown)."""
    if not tool_name or not isinstance(tool_input, Mapping):
        return []
    raw: list[str] = []
    if tool_name in _FILE_KEYS:
        raw = [v for k in _FILE_KEYS[tool_name] if isinstance(v := tool_input.get(k), str)]
    elif tool_name == "apply_patch":
        patch = tool_input.get("input", tool_input.get("patch"))
        raw = _PATCH_LINE.findall(patch) if isinstance(patch, str) else []
    elif tool_name == "Bash":
        command = tool_input.get("command")
        return bash_write_paths(command, cwd) if isinstance(command, str) else []
    return _unique(p for r in raw if (p := canonical_path(r, cwd)) is not None)


def _unique(paths: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(paths))


# -- Bash ------------------------------------------------------------------

_PUNCT = "();<>|&\n"
# Quoted or escaped operator characters are hidden from shlex behind these.
_HIDE = {c: chr(0xE000 + i) for i, c in enumerate(_PUNCT + "#")}
_SHOW = str.maketrans({v: k for k, v in _HIDE.items()})
_OPERATORS = sorted(
    ["&>>", "&>", ">>", ">|", ">&", "<<<", "<<", "<>", "<&", "&&", "||", "|&", ";;", *_PUNCT],
    key=len,
    reverse=True,
)
_WRITE_REDIRECTS = frozenset({">", ">>", ">|", "&>", "&>>", ">&"})
_READ_REDIRECTS = frozenset({"<", "<<", "<<<", "<>", "<&"})
_HEREDOC = re.compile(r"(?<!<)<<-?[ \t]*(['\"]?)([A-Za-z0-9_.-]+)\1")
_UNPARSEABLE = re.compile(r"[$`*?\[{]")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_WRAPPERS = frozenset({"sudo", "command", "nohup", "time", "exec", "env"})
_WRAPPER_ARG_OPTIONS = frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"})
_NONE: frozenset[str] = frozenset()
_TOUCH_VALUES = frozenset({"-d", "-t", "-r", "--date", "--reference"})
MAX_COMMAND_CHARS = 65536
"""A longer Bash command is not parsed."""


def _prepare(command: str) -> tuple[str, list[str]]:
    """Hide quoted/escaped operator characters, drop comments and heredoc bodies.

    Returns the text for shlex and the heredoc bodies (for ``apply_patch``).
    """
    out: list[str] = []
    bodies: list[str] = []
    pending: list[tuple[str, bool]] = []  # heredoc delimiters whose bodies follow this line
    quote = ""
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if quote == "'":
            out.append(_HIDE.get(c, c))
            quote = "" if c == "'" else quote
        elif quote == '"':
            if c == "\\" and i + 1 < n:
                out.append(c + _HIDE.get(command[i + 1], command[i + 1]))
                i += 1
            else:
                out.append(_HIDE.get(c, c))
                quote = "" if c == '"' else quote
        elif c == "\\" and i + 1 < n:
            if command[i + 1] != "\n":  # a line continuation disappears
                out.append(c + _HIDE.get(command[i + 1], command[i + 1]))
            i += 1
        elif c in "'\"":
            quote = c
            out.append(c)
        elif c == "#" and (not out or out[-1][-1] in " \t" + _PUNCT):
            while i < n and command[i] != "\n":
                i += 1
            continue
        elif c == "<" and (match := _HEREDOC.match(command, i)):
            pending.append((match.group(2), command[i + 2 : i + 3] == "-"))
            out.append(match.group(0).replace("'", "").replace('"', ""))
            i = match.end()
            continue
        elif c == "\n" and pending:
            out.append(c)
            i = _skip_heredocs(command, i + 1, pending, bodies)
            pending = []
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out), bodies


def _skip_heredocs(
    text: str, start: int, delimiters: list[tuple[str, bool]], bodies: list[str]
) -> int:
    """Skip the bodies of ``delimiters`` from ``start``; returns where the text goes on."""
    lines = text[start:].split("\n")
    used = 0
    for delimiter, strip_tabs in delimiters:
        body: list[str] = []
        while used < len(lines):
            line = lines[used]
            used += 1
            if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                break
            body.append(line)
        bodies.append("\n".join(body))
    return start + len("\n".join(lines[:used])) + (1 if used < len(lines) else 0)


def _split_operator(token: str) -> list[str]:
    parts: list[str] = []
    while token:
        op = next(o for o in _OPERATORS if token.startswith(o))
        parts.append(op)
        token = token[len(op) :]
    return parts


def _tokens(text: str) -> list[tuple[str, bool]]:
    """(token, is_operator) pairs; raises ValueError when shlex cannot split."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=_PUNCT)
    lex.whitespace_split = True
    lex.whitespace = " \t\r"
    lex.commenters = ""
    out: list[tuple[str, bool]] = []
    for token in lex:
        if token and all(ch in _PUNCT for ch in token):
            out.extend((op, True) for op in _split_operator(token))
        else:
            out.append((token.translate(_SHOW), False))
    return out


@dataclass
class _Simple:
    words: list[str]
    cwd: str | None
    targets: list[tuple[str, str | None]]  # redirection targets with the cwd they resolve against


def _simple_commands(tokens: list[tuple[str, bool]], cwd: str | None) -> list[_Simple]:
    commands: list[_Simple] = []
    stack: list[str | None] = []
    current = _Simple([], cwd, [])
    i = 0
    while i < len(tokens):
        token, is_op = tokens[i]
        i += 1
        if not is_op:
            current.words.append(token)
            continue
        if token in _WRITE_REDIRECTS or token in _READ_REDIRECTS:
            if current.words and current.words[-1].isdigit() and token not in ("&>", "&>>"):
                current.words.pop()  # the descriptor number of "2>"
            target = tokens[i][0] if i < len(tokens) and not tokens[i][1] else None
            if target is None:
                continue
            i += 1
            duplicate = token == ">&" and (target.isdigit() or target == "-")
            if token in _WRITE_REDIRECTS and not duplicate:
                current.targets.append((target, current.cwd))
            continue
        # a separator: the simple command ends here
        commands.append(current)
        cwd = _after_cd(current.words, current.cwd) if current.words else current.cwd
        if token == "(":
            stack.append(cwd)
        elif token == ")" and stack:
            cwd = stack.pop()
        current = _Simple([], cwd, [])
    commands.append(current)
    return [c for c in commands if c.words or c.targets]


def _after_cd(words: list[str], cwd: str | None) -> str | None:
    """The directory after this simple command (only ``cd`` changes it)."""
    if not words or words[0] != "cd":
        return cwd
    args = [w for w in words[1:] if w != "--"]
    if not args:
        return os.path.expanduser("~")
    target = args[0]
    if target == "-" or target.startswith("-") or _UNPARSEABLE.search(target):
        return None
    return canonical_path(target, cwd)


def _command_words(words: list[str]) -> list[str]:
    """Words without leading assignments and wrappers (``sudo``, ``env``, ``nohup`` ...)."""
    i = 0
    while i < len(words):
        word = words[i]
        if _ASSIGNMENT.match(word):
            i += 1
        elif os.path.basename(word) in _WRAPPERS:
            i += 1
            while i < len(words) and words[i].startswith("-") and words[i] != "-":
                i += 2 if words[i] in _WRAPPER_ARG_OPTIONS else 1
        else:
            break
    return words[i:]


def _split_args(
    args: list[str], with_value: frozenset[str] = _NONE
) -> tuple[dict[str, str], list[str]]:
    """(options with their values, operands). Everything after ``--`` is an operand;
    an option in ``with_value`` takes the next word (or ``--opt=value``, ``-tVALUE``)."""
    options: dict[str, str] = {}
    operands: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            operands.extend(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg[:2], "", arg[2:])
        if name in with_value:
            if not eq and not value and i < len(args):
                value, i = args[i], i + 1
            options[name] = value
    return options, operands


def _sed_files(args: list[str]) -> list[str]:
    in_place = False
    script_given = False
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional.extend(args[i:])
            break
        if arg.startswith("--"):
            name = arg[2:].split("=", 1)[0]
            if name == "in-place":
                in_place = True
            elif name in ("expression", "file"):
                script_given = True
                i += 0 if "=" in arg else 1
            elif name == "line-length" and "=" not in arg:
                i += 1
            continue
        if arg.startswith("-") and arg != "-":
            for pos, letter in enumerate(arg[1:], 1):
                if letter == "i":
                    in_place = True
                    break  # the rest is the backup suffix
                if letter in "efl":
                    script_given = script_given or letter != "l"
                    if pos == len(arg) - 1:
                        i += 1  # the value is the next word
                    break
            continue
        positional.append(arg)
    if not in_place:
        return []
    positional = [p for p in positional if p]  # BSD's `sed -i '' ...`
    return positional if script_given else positional[1:]


def _copy_targets(args: list[str], cwd: str | None, moves: bool) -> list[tuple[str, str | None]]:
    options, rest = _split_args(args, frozenset({"-t", "--target-directory", "-S", "--suffix"}))
    target_dir = options.get("-t", options.get("--target-directory"))
    if target_dir is None:
        if len(rest) < 2:
            return []
        sources, dest = rest[:-1], rest[-1]
    else:
        sources, dest = rest, target_dir
    out: list[tuple[str, str | None]] = [(s, cwd) for s in sources] if moves else []
    dest_path = None if _UNPARSEABLE.search(dest) else canonical_path(dest, cwd)
    if dest_path is None:
        return out
    if target_dir is not None or len(sources) > 1 or os.path.isdir(dest_path):
        out += [
            (os.path.join(dest_path, os.path.basename(s.rstrip("/"))), cwd)
            for s in sources
            if not _UNPARSEABLE.search(s) and s.rstrip("/")
        ]
    else:
        out.append((dest, cwd))
    return out


def _targets_of(simple: _Simple) -> list[tuple[str, str | None]]:
    out = list(simple.targets)
    words = _command_words(simple.words)
    if not words:
        return out
    name, args = os.path.basename(words[0]), words[1:]
    cwd = simple.cwd
    if name in ("tee", "rm", "touch"):
        out += [(a, cwd) for a in _split_args(args, _TOUCH_VALUES if name == "touch" else _NONE)[1]]
    elif name == "sed":
        out += [(a, cwd) for a in _sed_files(args)]
    elif name in ("cp", "mv"):
        out += _copy_targets(args, cwd, moves=name == "mv")
    return out


def _ignored(word: str) -> bool:
    return (
        word in ("", "-") or word.startswith(("/dev/", "/proc/")) or bool(_UNPARSEABLE.search(word))
    )


def bash_write_paths(command: str, cwd: str | None) -> list[str]:
    """The canonical paths a Bash command writes (see the module docstring)."""
    if not command or len(command) > MAX_COMMAND_CHARS or "\x00" in command:
        return []
    try:
        text, bodies = _prepare(command)
        tokens = _tokens(text)
    except ValueError:
        return []
    paths: list[str] = []
    for simple in _simple_commands(tokens, cwd):
        for word, base in _targets_of(simple):
            if _ignored(word):
                continue
            path = canonical_path(word, base)
            if path is not None and not path.startswith(("/dev/", "/proc/")):
                paths.append(path)
        words = _command_words(simple.words)
        if words and os.path.basename(words[0]) in ("apply_patch", "applypatch"):
            for body in bodies:
                paths += [
                    p for r in _PATCH_LINE.findall(body) if (p := canonical_path(r, simple.cwd))
                ]
    return _unique(paths)


# -- the index -------------------------------------------------------------


@dataclass
class _Writer:
    project_id: str
    last_ts: int


class ConflictIndex:
    """Live sessions' written paths and the conflicts between them.

    Limits: each session remembers at most ``max_paths_per_session`` paths
    (default :data:`MAX_PATHS_PER_SESSION`); writing one more forgets its
    least recently written path (and any conflict that rested on it). Each
    path remembers at most ``max_sessions_per_path`` writers (default
    :data:`MAX_SESSIONS_PER_PATH`); a further session's write of it is ignored
    (the conflict is already open). So the index holds at most
    live sessions times ``max_paths_per_session`` entries.
    """

    def __init__(
        self,
        *,
        max_paths_per_session: int = MAX_PATHS_PER_SESSION,
        max_sessions_per_path: int = MAX_SESSIONS_PER_PATH,
    ) -> None:
        if max_paths_per_session < 1 or max_sessions_per_path < 2:
            raise ValueError("limits: at least 1 path per session and 2 sessions per path")
        self._max_paths = max_paths_per_session
        self._max_sessions = max_sessions_per_path
        # path -> session -> writer, in the order the sessions first wrote it
        self._writers: dict[str, dict[str, _Writer]] = {}
        # session -> its paths, least recently written first
        self._sessions: dict[str, OrderedDict[str, None]] = {}
        # path -> project -> acknowledged; only while the path has two writers or more
        self._rows: dict[str, dict[str, bool]] = {}
        self._by_project: dict[str, set[str]] = {}

    # -- feeding ----------------------------------------------------------

    def record_write(
        self, session_id: str, project_id: str, path: str, ts: int
    ) -> list[dict[str, Any]]:
        """A live session wrote ``path`` (canonical). Returns the Conflicts to
        publish: one for each project whose row for this path just opened."""
        writers = self._writers.get(path)
        if writers is not None and session_id in writers:
            writer = writers[session_id]
            writer.last_ts = max(writer.last_ts, ts)
            self._sessions[session_id].move_to_end(path)
            return []
        if writers is not None and len(writers) >= self._max_sessions:
            return []
        writers = self._writers.setdefault(path, {})
        writers[session_id] = _Writer(project_id, ts)
        paths = self._sessions.setdefault(session_id, OrderedDict())
        paths[path] = None
        while len(paths) > self._max_paths:
            oldest = next(iter(paths))
            self._remove_writer(session_id, oldest)
        if len(writers) < 2:
            return []
        rows = self._rows.setdefault(path, {})
        opened: list[str] = []
        for project in self._projects(writers):
            # absent: first appearance; acknowledged: a session new to the file reopens it
            if rows.get(project, True):
                rows[project] = False
                self._by_project.setdefault(project, set()).add(path)
                opened.append(project)
        return [self._conflict(project, path) for project in opened]

    def forget_session(self, session_id: str) -> list[str]:
        """The session left the live map: its writes are forgotten. Returns the
        projects whose conflicts changed (sorted)."""
        paths = self._sessions.get(session_id)
        if not paths:
            self._sessions.pop(session_id, None)
            return []
        changed: set[str] = set()
        for path in list(paths):
            changed |= self._remove_writer(session_id, path)
        self._sessions.pop(session_id, None)
        return sorted(changed)

    def _remove_writer(self, session_id: str, path: str) -> set[str]:
        """Forget one write; returns the projects whose rows went away."""
        paths = self._sessions.get(session_id)
        if paths is not None:
            paths.pop(path, None)
        writers = self._writers.get(path)
        if writers is None or writers.pop(session_id, None) is None:
            return set()
        if not writers:
            del self._writers[path]
        rows = self._rows.get(path)
        if rows is None:
            return set()
        keep = set(self._projects(writers)) if len(writers) >= 2 else set()
        gone = {p for p in rows if p not in keep}
        for project in gone:
            del rows[project]
            index = self._by_project.get(project)
            if index is not None:
                index.discard(path)
                if not index:
                    del self._by_project[project]
        if not rows:
            del self._rows[path]
        return gone

    # -- reading ----------------------------------------------------------

    def list(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Open (unacknowledged) conflicts, one per project and path, newest write first."""
        if project_id is not None:
            keys = [(project_id, p) for p in self._by_project.get(project_id, ())]
        else:
            keys = [(proj, path) for path, rows in self._rows.items() for proj in rows]
        out = [self._conflict(proj, path) for proj, path in keys if not self._rows[path][proj]]
        out.sort(key=lambda c: (-c["lastWriteTs"], c["path"], c["projectId"]))
        return out

    def ack(self, project_id: str) -> int:
        """Acknowledge the project's open conflicts; returns how many."""
        count = 0
        for path in self._by_project.get(project_id, ()):
            rows = self._rows[path]
            if not rows[project_id]:
                rows[project_id] = True
                count += 1
        return count

    def open_count(self, project_id: str) -> int:
        """How many open conflicts the project has (its Health's ``openConflicts``)."""
        return sum(1 for p in self._by_project.get(project_id, ()) if not self._rows[p][project_id])

    def paths_of(self, session_id: str) -> builtins.list[str]:
        """The paths the index remembers for a session, least recently written first."""
        return list(self._sessions.get(session_id, ()))

    # -- shapes -----------------------------------------------------------

    @staticmethod
    def _projects(writers: Mapping[str, _Writer]) -> builtins.list[str]:
        return list(dict.fromkeys(w.project_id for w in writers.values()))

    def _conflict(self, project_id: str, path: str) -> dict[str, Any]:
        writers = self._writers[path]
        return {
            "projectId": project_id,
            "path": path,
            "sessionIds": list(writers),
            "projectIds": self._projects(writers),
            "lastWriteTs": max(w.last_ts for w in writers.values()),
            "acknowledged": self._rows[path][project_id],
        }
