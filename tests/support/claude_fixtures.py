"""Pytest fixtures for tests that run the real Claude Code CLI against a fake API.

``claude_bin`` (session) installs the CLI once; without npm it skips, and
when ``CI`` is set a missing npm or a failed install fails the test instead;
``fake_anthropic`` (function) is a factory of started
:class:`~tests.support.fake_anthropic.FakeAnthropic` servers, all closed at
teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeAlias

import pytest

from tests.support.claude_cli import require_claude_cli
from tests.support.fake_anthropic import DEFAULT_MAX_LIFETIME_S, FakeAnthropic, Script

FakeAnthropicFactory: TypeAlias = Callable[..., FakeAnthropic]


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The real ``claude`` executable (installed from npm into the test cache)."""
    return require_claude_cli()


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
