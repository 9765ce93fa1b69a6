"""Log configuration: levels, the journal format (``<N>`` prefixes, no timestamps) when
JOURNAL_STREAM names stderr, the human format otherwise, and the operator's lines."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.actors import oplog
from corral.supervisor.oplog import configure_logging, is_journal, parse_level, syslog_priority


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_parse_level() -> None:
    assert parse_level("debug") == logging.DEBUG
    assert parse_level(" Warning ") == parse_level("WARN") == logging.WARNING
    assert parse_level("CRITICAL") == logging.CRITICAL
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")


def test_syslog_priorities() -> None:
    levels = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert [syslog_priority(level) for level in levels] == [7, 6, 4, 3, 2]


def test_journal_stream_must_name_stderr(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as a, (tmp_path / "b").open("w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert is_journal(env, a)
        assert not is_journal(env, b)  # inherited by a shell whose stderr is elsewhere
        assert not is_journal({}, a)
        assert not is_journal({"JOURNAL_STREAM": "garbage"}, a)
        assert not is_journal(env, io.StringIO())


def _journal_lines(tmp_path: Path, level: int) -> list[str]:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        configure_logging(level, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, stream)
        oplog.session_started("web", "s-1", "mock", 4242, "/home/me/my project")
        oplog.turn_ended("web", "s-1", "done", 0.01234, 613, 140, 4.25)
        oplog.session_stalled("web", "s-1", 901.2)
        logging.getLogger("corral.ops").debug("hidden unless debug")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("corral.daemon").exception("it broke")
    return path.read_text().splitlines()


def test_journal_format_has_priorities_and_no_timestamps(
    tmp_path: Path, restore_root_logging: None
) -> None:
    lines = _journal_lines(tmp_path, logging.INFO)
    assert lines[0] == (
        "<6>corral.ops: session started project=web session=s-1 provider=mock pid=4242 "
        'cwd="/home/me/my project"'
    )
    assert lines[1] == (
        "<6>corral.ops: turn ended project=web session=s-1 status=done cost=$0.0123 "
        "tokens=613/140 duration=4.2s"
    )
    assert lines[2] == "<4>corral.ops: session stalled project=web session=s-1 idle=901s"
    assert lines[3] == "<3>corral.daemon: it broke"
    assert all(line.startswith("<3>") for line in lines[3:])  # the traceback too
    assert any("RuntimeError: boom" in line for line in lines[3:])
    assert not any("hidden" in line for line in lines)
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines)


def test_debug_level_lets_debug_through(tmp_path: Path, restore_root_logging: None) -> None:
    assert "<7>corral.ops: hidden unless debug" in _journal_lines(tmp_path, logging.DEBUG)


def test_human_format_has_timestamps(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, {}, stream)
    oplog.session_stopped("web", "s-1")
    line = stream.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO corral\.ops: "
        r"session stopped project=web session=s-1 reason=agent\.stop",
        line,
    ), line


def test_every_operator_event_is_one_line(restore_root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(logging.DEBUG, {}, stream)
    oplog.session_started("p", "s", "claude", None, "/w")
    oplog.turn_ended("p", "s", "error", 1.5, 1, 2, 0.04)
    oplog.session_stopped("p", "s", "replaced by a new session")
    oplog.session_error("p", "s", "process_crashed", 'exit 1: "bad"\nsecond line')
    oplog.session_stalled("p", "s", 12)
    oplog.conflict("/w/a.py", ["s", "t"], ["p", "q"])
    oplog.retention_purged(0)  # nothing purged: no line
    oplog.retention_purged(4)
    oplog.restart_recovered(0)  # a clean start: no line
    oplog.restart_recovered(2)
    lines = [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()]
    assert lines == [
        "session started project=p session=s provider=claude cwd=/w",
        "turn ended project=p session=s status=error cost=$1.5000 tokens=1/2 duration=0.0s",
        'session stopped project=p session=s reason="replaced by a new session"',
        'session error project=p session=s error_class=process_crashed error="exit 1: \\"bad\\"'
        '\\nsecond line"',
        "session stalled project=p session=s idle=12s",
        "conflict path=/w/a.py sessions=s,t projects=p,q",
        "retention purge sessions=4",
        "restart recovery interrupted=2",
    ]
    levels = [line.split()[2] for line in stream.getvalue().splitlines()]
    assert levels == ["INFO", "WARNING", "INFO", "ERROR", "WARNING", "WARNING", "INFO", "WARNING"]


def test_long_values_are_cut() -> None:
    line = oplog.format_fields("session error", error="x" * 1000)
    assert len(line) < 330 and line.endswith("…")
