"""Small helpers for the daemon integration tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from corral.protocol.client import Client, Subscriber

FAST = {"delayMs": 0}


def start_mock(
    client: Client, project: str = "p1", prompt: str = "hello", **config: Any
) -> dict[str, Any]:
    cfg = dict(FAST)
    cfg.update(config)
    return client.call(
        "agent.start",
        {"projectId": project, "provider": "mock", "prompt": prompt, "providerConfig": cfg},
    )


def wait_status(
    sub: Subscriber,
    session_id: str,
    statuses: tuple[str, ...] = ("done", "error"),
    timeout: float = 20.0,
) -> dict[str, Any]:
    """The data of the first agent.status event of `session_id` in `statuses`."""
    _topic, frame = sub.wait_for(
        lambda _t, f: (
            f.get("event") == "agent.status"
            and f["data"].get("sessionId") == session_id
            and f["data"].get("status") in statuses
        ),
        timeout,
    )
    return dict(frame["data"])


def poll(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def set_setting(client: Client, key: str, value: str) -> None:
    client.call("settings.set", {"key": key, "value": value})


def all_messages(client: Client, session_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = client.call(
            "session.messages.load", {"sessionId": session_id, "afterSeq": after, "limit": 5000}
        )
        out.extend(page["messages"])
        if not page["hasMore"]:
            return out
        after = out[-1]["seqId"]
