"""The follower against a real daemon, with events lost on the way.

The subscriber has a tiny receive high-water mark and a slow consumer. The
daemon's PUB socket only drops for a subscriber 1,000 events behind, more
than a test should wait for, so :class:`LossySubscriber` also drops events the
way the PUB socket does: whole events, leaving an ``eseq`` jump. Whatever is
lost (messages, the final status), the follower must end with exactly the
stored sequence, each message once, in seqId order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from corral.protocol.aio import AsyncClient, AsyncSubscriber
from corral.protocol.client import Client, Subscriber
from corral.protocol.follow import AsyncSessionFollower, SessionFollower
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import all_messages, start_mock


class LossySubscriber(Subscriber):
    """Drops every ``every``-th event of the project (and, optionally, its statuses)."""

    def __init__(self, url: str, every: int, drop_status: bool = False, **kw: Any) -> None:
        super().__init__(url, **kw)
        self.every = every
        self.drop_status = drop_status
        self.seen = 0
        self.dropped = 0

    def recv(self, timeout: float) -> tuple[str, dict[str, Any]] | None:
        while True:
            got = super().recv(timeout)
            if got is None:
                return None
            event = got[1].get("event")
            if event == "agent.message":
                self.seen += 1
                if self.seen % self.every == 0:
                    self.dropped += 1
                    continue
            if event == "agent.status" and self.drop_status:
                self.dropped += 1
                continue
            time.sleep(0.002)  # a slow consumer
            return got


@pytest.mark.parametrize(("every", "drop_status"), [(2, False), (3, True)])
def test_follower_ends_with_the_stored_sequence(
    daemon: DaemonProcess, client: Client, every: int, drop_status: bool
) -> None:
    sub = LossySubscriber(daemon.events_url, every, drop_status, rcvhwm=1)
    with sub:
        sub.wait_connected(client)
        started = start_mock(client, "gap", toolCalls=20, flood=300, textBytes=40)
        follower = SessionFollower(client, sub, "gap", started["sessionId"], check_interval=0.5)
        got = list(follower.messages(until_turn_end=True))
        assert follower.status == "done"
    stored = all_messages(client, started["sessionId"])
    assert [m["seqId"] for m in got] == list(range(1, len(stored) + 1))
    assert got == stored
    assert sub.dropped > 0


def test_project_follower_across_two_sessions(daemon: DaemonProcess, client: Client) -> None:
    sub = LossySubscriber(daemon.events_url, 4)
    with sub:
        sub.wait_connected(client)
        first = start_mock(client, "two", flood=50)
        follower = SessionFollower(client, sub, "two", check_interval=0.5)
        updates = follower.updates()
        seen: dict[str, list[int]] = {}
        second: dict[str, Any] | None = None
        for update in updates:
            if update.message is not None:
                seen.setdefault(update.session_id, []).append(update.message["seqId"])
            if update.kind == "status" and update.status == "done":
                if update.session_id == first["sessionId"] and second is None:
                    second = start_mock(client, "two", prompt="again", flood=50)
                elif second is not None and update.session_id == second["sessionId"]:
                    break
        follower.close()
    assert second is not None
    for session in (first, second):
        stored = all_messages(client, session["sessionId"])
        assert seen[session["sessionId"]] == [m["seqId"] for m in stored]


def test_async_follower_live(daemon: DaemonProcess) -> None:
    async def main() -> tuple[list[dict[str, Any]], str, str | None]:
        async with (
            AsyncClient(daemon.rpc_url) as client,
            AsyncSubscriber(daemon.events_url, rcvhwm=1) as sub,
        ):
            await sub.wait_connected(client)
            started = await client.start(
                "aio", "mock", "hello", providerConfig={"delayMs": 0, "flood": 100}
            )
            follower = AsyncSessionFollower(client, sub, "aio", started["sessionId"])
            got = [m async for m in follower.messages(until_turn_end=True)]
            return got, started["sessionId"], follower.status

    got, session_id, status = asyncio.run(main())
    assert status == "done"
    with Client(daemon.rpc_url) as client:
        assert got == all_messages(client, session_id)
