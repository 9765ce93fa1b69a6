"""OutputGuard (unknown items capped, over-long line notes, garbage stops a
process) on its own, and through a StdioStreamHandle running a real process."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.actors.control import exit_reason
from corral.actors.normalized import Normalized
from corral.actors.ports import ExitReport, LaunchRequest
from corral.supervisor.process.lines import DroppedLine
from corral.supervisor.providers.claude.dialect import ClaudeDialect
from corral.supervisor.providers.handles import output_guard as og
from corral.supervisor.providers.handles.output_guard import OutputGuard
from corral.supervisor.providers.handles.stdio_stream import StdioSpec, StdioStreamHandle
from tests.support.proc import pid_alive, wait_until

pytestmark = pytest.mark.timeout(60)

UNKNOWN = [Normalized(kind="unknown", raw={"unparsed": "x"})]
TEXT = [Normalized(kind="text", text="hi")]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def garbage(guard: OutputGuard, n: int, line: bytes = b"not json") -> list[Normalized]:
    out: list[Normalized] = []
    for _ in range(n):
        out += guard.take(line, list(UNKNOWN), False)
    return out


# ----------------------------------------------------------------- the cap


def test_unknown_items_past_the_cap_are_counted_in_one_summary() -> None:
    guard = OutputGuard()
    obj = b'{"type": "brand_new"}'  # a JSON object: stored, never garbage
    kept = [guard.take(obj, list(UNKNOWN), False) for _ in range(og.MAX_UNKNOWN_KEPT + 50)]
    assert sum(len(k) for k in kept) == og.MAX_UNKNOWN_KEPT
    assert guard.verdict is None
    assert guard.take(b'{"type": "assistant"}', list(TEXT), False) == TEXT  # never capped
    (summary,) = guard.summary()
    assert summary.kind == "unknown"
    assert summary.raw == {"type": "corral.dropped", "count": 50, "limit": og.MAX_UNKNOWN_KEPT}
    assert guard.summary() == []  # counted once
    guard.take(obj, list(UNKNOWN), False)
    assert guard.summary()[0].raw == {"type": "corral.dropped", "count": 1, "limit": 200}


def test_dropped_line_note_text_and_its_cap() -> None:
    guard = OutputGuard()
    (note,) = guard.dropped_line(DroppedLine(52_428_800, 8 * 1024 * 1024))
    assert note.kind == "system"
    assert note.text == "a provider output line of 52,428,800 bytes was dropped (limit 8 MiB)"
    assert og.dropped_line_text(DroppedLine(1500, 1000)) == (
        "a provider output line of 1,500 bytes was dropped (limit 1,000 bytes)"
    )
    guard.take(b'{"type": "assistant"}', list(TEXT), False)  # keeps the garbage run short
    notes = [guard.dropped_line(DroppedLine(9, 8)) for _ in range(og.MAX_DROPPED_NOTES + 5)]
    assert sum(len(n) for n in notes) == og.MAX_DROPPED_NOTES - 1
    assert guard.summary()[0].raw == {"type": "corral.dropped", "count": 6, "limit": 200}


# ---------------------------------------------------------------- garbage


def test_a_run_of_garbage_lines_gives_a_verdict_with_the_first_as_sample() -> None:
    guard = OutputGuard()
    guard.take(b'{"type": "system"}', [Normalized(kind="init")], False)
    garbage(guard, 10, b"early junk")
    guard.take(b"{}", [], True)  # a line the dialect answered ends the run
    garbage(guard, og.GARBAGE_RUN_LINES - 1, b"junk one")
    assert guard.verdict is None
    garbage(guard, 1, b"junk two")
    assert guard.verdict == "provider output is not stream-json: junk one"
    assert garbage(guard, 5) == [] and guard.take(b"{}", list(TEXT), False) == []


def test_json_objects_of_unknown_shape_are_not_garbage() -> None:
    guard = OutputGuard()
    for _ in range(og.GARBAGE_RUN_LINES + 10):
        guard.take(b' {"type": "x", "deep": [1]} ', list(UNKNOWN), False)
        guard.take(b"[1, 2]", [], False)  # JSON, but not an object: garbage
    assert guard.verdict == "provider output is not stream-json: [1, 2]"


def test_garbage_for_a_while_before_anything_recognised() -> None:
    clock = Clock()
    guard = OutputGuard(clock)
    garbage(guard, 1, b"\x1b[31mred \xff\xfe" + b"A" * 500)
    clock.now += og.GARBAGE_SECONDS - 0.1
    garbage(guard, 1)
    assert guard.verdict is None
    clock.now += 0.1
    garbage(guard, 1)
    assert guard.verdict is not None
    sample = guard.verdict.removeprefix("provider output is not stream-json: ")
    assert len(sample) == og.SAMPLE_CHARS
    assert sample.startswith("\ufffd[31mred \ufffd\ufffdAAA")  # no control characters


def test_after_a_recognised_item_only_the_run_length_counts() -> None:
    clock = Clock()
    guard = OutputGuard(clock)
    guard.take(b'{"type": "system"}', [Normalized(kind="init")], False)
    garbage(guard, 1)
    clock.now += 3600
    garbage(guard, 1)
    assert guard.verdict is None


def test_an_over_long_line_counts_as_garbage() -> None:
    guard = OutputGuard()
    for _ in range(og.GARBAGE_RUN_LINES):
        guard.dropped_line(DroppedLine(10, 8))
    assert guard.verdict == (
        "provider output is not stream-json: "
        "(a provider output line of 10 bytes was dropped (limit 8 bytes))"
    )


def test_exit_reason_prefers_the_reports_reason() -> None:
    report = ExitReport(returncode=-15, signal=15, stderr_tail="boom\n", stopped_by_us=True)
    assert exit_reason(report) == "provider killed by signal 15: boom"
    assert exit_reason(ExitReport(0, None, "", True, reason="why")) == "why"


# ----------------------------------------------------- through a real process


class Run:
    """A StdioStreamHandle (Claude's dialect) on a Python program; records output."""

    def __init__(self, tmp: Path, program: str) -> None:
        self.items: list[Normalized] = []
        self.batches = 0
        self.exits: list[ExitReport] = []
        self.exited = threading.Event()
        spec = StdioSpec(
            argv=[sys.executable, "-c", program],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            cwd=str(tmp),
            protocol=ClaudeDialect(),
        )
        request = LaunchRequest(
            session_id="s1",
            project_id="p1",
            provider="test",
            options={},
            prompt="go",
            resume_id=None,
            settings={},
            on_messages=self._messages,
            on_exit=self._exit,
        )
        self.handle = StdioStreamHandle(spec, request, name="guard-test")
        self.handle.start("go")

    def _messages(self, items: list[Normalized], done: Callable[[], None]) -> None:
        self.items.extend(items)
        self.batches += 1
        done()

    def _exit(self, report: ExitReport) -> None:
        self.exits.append(report)
        self.exited.set()

    def kinds(self) -> list[str]:
        return [n.kind for n in self.items]

    def stop(self) -> None:
        pid = self.handle.pid
        if pid is not None and pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        self.handle.wait_exit(10)


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[[str], Run]]:
    runs: list[Run] = []

    def start(program: str) -> Run:
        r = Run(tmp_path, program)
        runs.append(r)
        return r

    yield start
    for r in runs:
        r.stop()


PRELUDE = (
    "import json, sys, time\n"
    "out = sys.stdout.buffer\n"
    "sys.stdin.buffer.readline()\n"
    "def emit(obj): out.write(json.dumps(obj).encode() + b'\\n'); out.flush()\n"
    "INIT = {'type': 'system', 'subtype': 'init', 'model': 'm', 'session_id': 'x'}\n"
    "RESULT = {'type': 'result', 'subtype': 'success', 'is_error': False, 'total_cost_usd': 0}\n"
)


def test_handle_stops_a_garbage_flood_and_reports_why(run: Callable[[str], Run]) -> None:
    r = run(PRELUDE + "i = 0\nwhile True:\n    out.write(b'junk %d\\n' % i); i += 1\n")
    assert r.exited.wait(15)
    (report,) = r.exits
    assert report.reason == "provider output is not stream-json: junk 0"
    assert exit_reason(report) == report.reason
    assert report.stopped_by_us
    assert report.pid is not None and not pid_alive(report.pid)
    raws = [n.raw for n in r.items]
    assert r.kinds() == ["unknown"] * (og.MAX_UNKNOWN_KEPT + 1)
    assert raws[0] == {"unparsed": "junk 0"}
    assert raws[-1] == {
        "type": "corral.dropped",
        "count": og.GARBAGE_RUN_LINES - og.MAX_UNKNOWN_KEPT,
        "limit": og.MAX_UNKNOWN_KEPT,
    }


def test_handle_counts_dropped_unknowns_at_the_turn_end(run: Callable[[str], Run]) -> None:
    program = PRELUDE + (
        "emit(INIT)\n"
        "for i in range(250): emit({'type': 'brand_new', 'i': i})\n"
        "emit(RESULT)\n"
        "sys.stdin.buffer.readline()\n"  # waits for stdin's end
    )
    r = run(program)
    assert wait_until(lambda: "turn_end" in r.kinds(), 10)
    kinds = r.kinds()
    assert kinds.count("unknown") == og.MAX_UNKNOWN_KEPT + 1
    summary = [n.raw for n in r.items if n.raw and n.raw.get("type") == "corral.dropped"]
    assert summary == [{"type": "corral.dropped", "count": 50, "limit": og.MAX_UNKNOWN_KEPT}]
    r.handle.close()
    assert r.exited.wait(10)
    assert r.exits[0].reason is None
    assert r.kinds().count("unknown") == og.MAX_UNKNOWN_KEPT + 1  # nothing more to count


def test_handle_turns_an_over_long_line_into_a_note_in_order(run: Callable[[str], Run]) -> None:
    program = PRELUDE + (
        "emit(INIT)\n"
        'out.write(b\'{"type": "assistant", "x": "\' + b\'y\' * (9 * 1024 * 1024) + b\'"}\\n\')\n'
        "emit({'type': 'assistant', 'message': {'content': [{'type': 'text', 'text': 'after'}]}})\n"
        "emit(RESULT)\n"
    )
    r = run(program)
    assert r.exited.wait(15)
    shown = [(n.kind, n.text) for n in r.items if n.kind in ("init", "system", "text")]
    size = 9 * 1024 * 1024 + len('{"type": "assistant", "x": ""}')
    assert shown == [
        ("init", ""),
        ("system", f"a provider output line of {size:,} bytes was dropped (limit 8 MiB)"),
        ("text", "after"),
    ]
    assert r.exits[0].reason is None and r.exits[0].returncode == 0
