"""Pytest fixtures for tests that run the real Claude Code CLI against a fake API.

``claude_bin`` (session) installs the CLI once and skips only when npm is
missing; ``fake_anthropic`` (function) is a factory of started
:class:`~tests.support.fake_anthropic.FakeAnthropic` servers, all closed at
teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from tests.support.claude_cli import ensure_claude_cli
from tests.support.fake_anthropic import DEFAULT_MAX_LIFETIME_S, FakeAnthropic, Script

NPM_MISSING_REASON = "npm not available: cannot install @anthropic-ai/claude-code"

FakeAnthropicFactory: TypeAlias = Callable[..., FakeAnthropic]


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The real ``claude`` executable (installed from npm into the test cache)."""
    binary = ensure_claude_cli()
    if binary is None:
        pytest.skip(NPM_MISSING_REASON)
    return binary


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropicFactory]:
    """A factory: ``fake_anthropic(script, max_lifetime=...)`` -> a started server."""
    servers: list[FakeAnthropic] = []

    def make(
        script: Script | None = None, *, max_lifetime: float = DEFAULT_MAX_LIFETIME_S, **kw: Any
    ) -> FakeAnthropic:
        server = FakeAnthropic(script, max_lifetime=max_lifetime, **kw).start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.close()
