"""Tests of the protocol reference generator (supervisor/docgen.py) and docs/protocol.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.actors import settings as settings_mod
from corral.actors.state import SessionEvent
from corral.protocol.errors import ALL_ERRORS
from corral.protocol.events import EVENTS
from corral.protocol.methods import METHODS, PROVIDERS
from corral.supervisor.providers.claude import adapter as claude_adapter
from corral.supervisor.providers.mock import config as mock_agent
from tests.support import docgen

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def generated() -> str:
    return docgen.generate()


def _section(text: str, heading: str) -> str:
    """The body of the ``### heading`` section of the generated block."""
    start = text.index(f"### {heading}\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end >= 0 else len(text)]


# ------------------------------------------------------------------ the committed document


def test_committed_document_is_up_to_date() -> None:
    assert docgen.check_file(DOC), (
        "docs/protocol.md is stale: run python -m tests.support.docgen --write docs/protocol.md"
    )
    assert docgen.main(["--check", str(DOC)]) == 0


def test_committed_document_has_one_generated_block() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(docgen.START) == 1
    assert text.count(docgen.END) == 1
    assert text.index(docgen.START) < text.index(docgen.END)


# ------------------------------------------------------------------ coverage of the tables


def test_methods_table_mentions_every_method(generated: str) -> None:
    methods = _section(generated, "Methods")
    for name in METHODS:
        assert f"[`{name}`]" in methods, name
        assert f"#### `{name}`\n" in methods, name
        for param in METHODS[name].params.get("properties", {}):
            assert f"`{param}`" in methods, (name, param)


def test_errors_table_mentions_every_reason(generated: str) -> None:
    errors = _section(generated, "Errors")
    for cls in ALL_ERRORS:
        assert f"| {cls.code} | `{cls.reason}` |" in errors, cls.reason


def test_events_table_mentions_every_event(generated: str) -> None:
    events = _section(generated, "Events")
    for name in EVENTS:
        assert f"| `{name}` |" in events, name


def test_settings_table_mentions_every_key(generated: str) -> None:
    table = _section(generated, "Settings")
    for key, default in settings_mod.DEFAULTS.items():
        assert f'| `{key}` | `"{default}"` |' in table, key


def test_providers_tables_mention_every_provider_and_config_key(generated: str) -> None:
    providers = _section(generated, "Providers")
    for name in PROVIDERS:
        assert f"| `{name}` |" in providers, name
    mock_part = providers[providers.index("#### `mock` providerConfig") :]
    for key in mock_agent.DEFAULTS:
        assert f"| `{key}` |" in mock_part, key
    for key in claude_adapter.CONFIG_KEYS:
        assert f"| `{key}` |" in providers, key


def test_state_machine_table_is_the_modules(generated: str) -> None:
    from corral.actors.state import describe_table

    machine = _section(generated, "Session status state machine")
    assert describe_table() in machine
    for event in SessionEvent:
        assert f"| `{event.name}` |" in machine, event.name


def test_generation_is_deterministic(generated: str) -> None:
    assert docgen.generate() == generated


def test_shape_links_point_at_generated_headings(generated: str) -> None:
    for name, _schema in docgen.SHAPES:
        assert f"#### {name}\n" in generated
        assert f"[{name}](#{name.lower()})" in generated


# ------------------------------------------------------------------ drift guards


def test_settings_ranges_are_probed_against_the_validators(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(docgen.SETTINGS_INT_RANGES, "session_retention_count", (1, 49))
    with pytest.raises(docgen.DocDrift):
        docgen.generate()


def test_missing_words_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(docgen.ERROR_WHEN, "not_found")
    with pytest.raises(docgen.DocDrift):
        docgen.generate()


def test_missing_mock_effect_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(mock_agent.EFFECTS, "flood")
    with pytest.raises(docgen.DocDrift):
        docgen.generate()


# ------------------------------------------------------------------ markers and the CLI


def _doc(block: str) -> str:
    return f"# Title\n\nprose\n\n{docgen.START}\n{block}{docgen.END}\n\nafter\n"


def test_extract_and_splice_round_trip() -> None:
    text = _doc("old\n")
    assert docgen.extract(text) == "old\n"
    new = docgen.splice(text, "new\n")
    assert new == _doc("new\n")
    assert docgen.extract(new) == "new\n"


@pytest.mark.parametrize(
    "text",
    [
        "no markers\n",
        f"{docgen.END}\n{docgen.START}\n",
        f"{docgen.START}\n{docgen.START}\n{docgen.END}\n",
    ],
)
def test_bad_markers_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        docgen.extract(text)


def test_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "protocol.md"
    path.write_text(_doc("stale\n"), encoding="utf-8")
    assert docgen.main(["--check", str(path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert docgen.main(["--write", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nprose\n\n")
    assert text.endswith(f"{docgen.END}\n\nafter\n")
    assert docgen.main(["--check", str(path)]) == 0


def test_check_without_markers_fails(tmp_path: Path) -> None:
    path = tmp_path / "plain.md"
    path.write_text("nothing generated here\n", encoding="utf-8")
    assert docgen.main(["--check", str(path)]) == 1
    assert docgen.main(["--check", str(tmp_path / "missing.md")]) == 1


def test_print_mode(capsys: pytest.CaptureFixture[str], generated: str) -> None:
    assert docgen.main([]) == 0
    assert capsys.readouterr().out == generated
