"""The asyncio client: the same surface as the sync one (calls, typed errors,
concurrent and pipelined calls, timeouts) and the asyncio subscriber."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.protocol.aio import AsyncClient, AsyncSubscriber, DaemonUnreachable
from corral.protocol.errors import InvalidParams, NoSession, RpcError, SessionRunning
from corral.protocol.events import HEARTBEAT_TOPIC
from tests.unit.test_client_pipeline import reordering_handler
from tests.unit.test_protocol_client import (
    Publisher,
    RouterServer,
    body,
    jsonrpc_handler,
    sock_dir,
)

__all__ = ["sock_dir"]


@pytest.fixture
def server(sock_dir: Path) -> Iterator[RouterServer]:
    srv = RouterServer(f"ipc://{sock_dir}/rpc.sock", jsonrpc_handler)
    yield srv
    srv.close()


def test_calls_errors_and_wrappers(server: RouterServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, timeout=2) as client:
            assert await client.call("echo", {"a": 1}) == {"a": 1}
            with pytest.raises(NoSession) as info:
                await client.call("fail")
            assert info.value.data == {"reason": "no_session", "x": 1}
            with pytest.raises(InvalidParams) as bad:
                await client.call("bad")
            assert bad.value.field == "limit"
            assert await client.call("stale-first") == {"fresh": True}
            assert await client.stop("p") == {"method": "agent.stop"}
            assert body(server.received[-1])["params"] == {"projectId": "p"}
            await client.start("p", "mock", "hi", provider_config={"delayMs": 0})
            assert body(server.received[-1])["params"]["providerConfig"] == {"delayMs": 0}
            await client.notify("echo", {"n": 1})

    asyncio.run(main())


def test_concurrent_calls_share_one_socket(sock_dir: Path) -> None:
    srv = RouterServer(f"ipc://{sock_dir}/r.sock", reordering_handler(3))

    async def main() -> None:
        async with AsyncClient(srv.url, timeout=2) as client:
            got = await asyncio.gather(*(client.call("echo", {"n": i}) for i in range(3)))
            assert got == [{"n": 0}, {"n": 1}, {"n": 2}]  # answered in reverse
            calls: list[tuple[str, dict[str, Any] | None]] = [
                ("echo", {"n": 1}),
                ("fail", {"n": 2}),
                ("echo", {"n": 3}),
            ]
            mixed = await client.pipeline(calls, return_exceptions=True)
            assert mixed[0] == {"n": 1} and isinstance(mixed[1], SessionRunning)
            with pytest.raises(RpcError):
                await client.pipeline(calls)

    try:
        asyncio.run(main())
    finally:
        srv.close()


def test_timeouts(server: RouterServer, sock_dir: Path) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, timeout=2) as client:
            t0 = time.monotonic()
            with pytest.raises(DaemonUnreachable):
                await client.call("slow", timeout=0.1)
            # the call's own timeout, not the client's 2 s (with room for a loaded machine)
            assert time.monotonic() - t0 < 1.5
            assert await client.call("echo", {"n": 2}) == {"n": 2}  # the late answer is dropped
        nobody = f"ipc://{sock_dir}/nobody.sock"
        async with AsyncClient(nobody, timeout=0.1) as lost:
            with pytest.raises(DaemonUnreachable) as info:
                await lost.ping()
            assert isinstance(info.value, TimeoutError) and info.value.url == nobody

    asyncio.run(main())


def test_async_subscriber(sock_dir: Path) -> None:
    pub = Publisher(f"ipc://{sock_dir}/events.sock")

    async def main() -> None:
        async with AsyncSubscriber(pub.url) as sub:
            await sub.wait_connected(timeout=5)
            pub.skip(2)
            pub.publish("agent.status", {"sessionId": "s", "status": "done"}, "p")
            topic, frame = await sub.wait_for(lambda t, f: f["event"] == "agent.status", 5)
            assert topic == "project/p/agent.status" and frame["data"]["status"] == "done"
            assert sub.gaps == 1 and sub.everything
            topic, _ = await sub.wait_for(lambda t, f: True, 5)
            assert topic == HEARTBEAT_TOPIC
        async with AsyncSubscriber(pub.url, ["project/q/"]) as only_q:
            await only_q.wait_connected(timeout=5)
            assert await only_q.recv(0.1) is None  # heartbeats were only subscribed for the wait
            assert only_q.topics == ("project/q/",)

    try:
        asyncio.run(main())
    finally:
        pub.close()


def test_call_batch(server: RouterServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, timeout=2) as client:
            batch = client.call_batch(
                [("a", {"x": 1}), ("b", None), {"jsonrpc": "2.0", "method": "n"}]
            )
            out, single = await asyncio.gather(batch, client.call("echo", {"y": 2}))
            assert {r["result"]["method"] for r in out} == {"a", "b"} and single == {"y": 2}
            notes = [{"jsonrpc": "2.0", "method": "n"}]
            assert await client.call_batch(notes, timeout=0.05) == []

    asyncio.run(main())
