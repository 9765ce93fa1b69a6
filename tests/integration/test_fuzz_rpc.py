"""Fuzzing the RPC surface of one real daemon with hypothesis.

Arbitrary multipart frames and bytes, arbitrary JSON documents, well-formed
requests with random params for every method ``rpc.describe`` lists, and
batches of all of these, sent pipelined over DEALER sockets, many cases per
round trip. After every round: every request with an id was answered exactly
once, with its id and a well-formed response (an error when it was invalid);
no notification was answered; the daemon process runs and answers
``daemon.ping``; and the sessions, settings and notifications are what they
were before (state-changing methods are only sent invalid, or aimed at
projects and sessions that do not exist).

``CORRAL_FUZZ_CASES`` sets the number of cases of the module (default 5,000;
CI's long run sets 100,000); ``CORRAL_FUZZ_SEED`` replays a run (the seed is
printed).
"""

from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from corral.protocol.client import Client
from corral.supervisor.background import DaemonProcess
from tests.integration.helpers import poll
from tests.support.fuzz_rpc import Message, Payload, RpcFuzzer
from tests.support.fuzz_strategies import (
    GHOST_SAFE,
    READ_ONLY,
    Known,
    batches,
    documents,
    frames,
    method_requests,
    payloads,
)

CASES = int(os.environ.get("CORRAL_FUZZ_CASES", "5000"))
SEED_ENV = os.environ.get("CORRAL_FUZZ_SEED", "")
SEED = int(SEED_ENV) if SEED_ENV else random.SystemRandom().randrange(2**32)

# share of the cases, and cases per round trip, of each test
SHARES = {"frames": 0.2, "documents": 0.2, "methods": 0.5, "batches": 0.1}
PER_ROUND = {"frames": 25, "documents": 25, "methods": 50, "batches": 10}

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120 + CASES // 25)]


@dataclass
class Fuzzed:
    daemon: DaemonProcess
    client: Client
    methods: dict[str, Any]
    known: Known


def state_of(client: Client) -> tuple[Any, ...]:
    """What invalid requests must never change."""
    sessions, settings_, notes, info = client.pipeline(
        [
            ("session.list", {"limit": 500}),
            ("settings.getAll", None),
            ("notifications.list", {"limit": 100}),
            ("daemon.info", None),
        ],
        timeout=15,
    )
    return sessions, settings_, notes, info["sessions"]["stored"]


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Fuzzed]:
    """One daemon for the module, with one finished session (stopped by PID at the end)."""
    tmp = Path(tempfile.mkdtemp(prefix="cr-fz-"))
    env = {k: v for k, v in os.environ.items() if k not in ("CORRAL_RPC", "CORRAL_EVENTS")}
    env.pop("CORRAL_DATA_DIR", None)
    env["XDG_CONFIG_HOME"] = str(tmp / "config")
    d = DaemonProcess(tmp / "run" / "corral", tmp / "data", log_path=tmp / "daemon.log", env=env)
    try:
        d.start()
        with d.client(timeout=15) as client:
            # a short cleanup grace: the finished session is retired before the baseline
            client.call("settings.set", {"key": "cleanup_grace_ms", "value": "200"})
            sid = client.call(
                "agent.start",
                {
                    "projectId": "base",
                    "provider": "mock",
                    "prompt": "hello",
                    "cwd": str(tmp),
                    "providerConfig": {"delayMs": 0},
                },
            )["sessionId"]
            poll(
                lambda: (
                    client.call("session.get", {"projectId": "base"})["session"]["status"] == "done"
                )
            )
            poll(lambda: client.call("notifications.list")["notifications"])
            poll(lambda: client.call("daemon.info")["sessions"]["live"] == 0)
            methods = client.call("rpc.describe")["methods"]
            yield Fuzzed(d, client, methods, Known("base", sid))
    finally:
        d.stop(timeout=20)
        d.kill()
        print(f"fuzz daemon log tail:\n{d.log_tail(3000)}")
        shutil.rmtree(tmp, ignore_errors=True)


def fuzz(f: Fuzzed, name: str, strategy: SearchStrategy[Message]) -> None:
    """Run this test's share of the cases, ``PER_ROUND[name]`` per round trip."""
    per_round = PER_ROUND[name]
    cases = max(per_round, round(CASES * SHARES[name]))
    print(f"fuzz {name}: {cases} cases, CORRAL_FUZZ_SEED={SEED}")
    fuzzer = RpcFuzzer(
        f.daemon.rpc_url,
        alive=lambda: f.daemon.proc is not None and f.daemon.proc.poll() is None,
        state=lambda: state_of(f.client),
    )

    @settings(
        max_examples=math.ceil(cases / per_round),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @seed(SEED)
    @given(st.lists(strategy, min_size=per_round, max_size=per_round))
    def rounds(messages: list[Message]) -> None:
        fuzzer.round(messages)

    started = time.monotonic()
    try:
        rounds()
        fuzzer.finish()
    finally:
        fuzzer.close()
    print(
        f"fuzz {name}: {fuzzer.cases} cases in {fuzzer.rounds} rounds, "
        f"{time.monotonic() - started:.1f}s"
    )
    assert fuzzer.cases >= cases * 0.9, f"only {fuzzer.cases} of {cases} cases ran"


def test_describe_lists_every_method_the_fuzzer_knows(fuzzed: Fuzzed) -> None:
    # methods not named here are fuzzed as state-changing (only invalid requests)
    assert set(fuzzed.methods) >= READ_ONLY | GHOST_SAFE
    for spec in fuzzed.methods.values():
        assert spec["params"]["additionalProperties"] is False


def test_fuzz_arbitrary_frames(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, "frames", frames(fuzzed.known))


def test_fuzz_arbitrary_json_documents(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, "documents", payloads(documents()))


def test_fuzz_every_method_with_random_params(fuzzed: Fuzzed) -> None:
    fuzz(
        fuzzed,
        "methods",
        st.builds(Payload, method_requests(fuzzed.methods, fuzzed.known), st.booleans()),
    )


def test_fuzz_batches(fuzzed: Fuzzed) -> None:
    fuzz(fuzzed, "batches", batches(fuzzed.methods, fuzzed.known))
