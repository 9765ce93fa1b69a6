"""The RPC load: one lean DEALER client used against corral and every baseline
alike, and client processes that run it pipelined or sequentially.

Framings: ``corral`` sends ``["", request]`` (a JSON-RPC request, integer ids),
``circus`` sends ``[request]`` (circus's command objects, string ids). Every
reply is decoded with orjson, as a real client would.

A worker process (``python -m bench.clients``) reads one JSON command per line
on stdin and answers one JSON line: ``prepare`` (connect, warm up, check the
answer), then ``go`` (run, report start and end times on the monotonic clock,
which all processes share, and the latencies of a sequential run). Every wait is
bounded: a missing reply is reported as an error, never waited on forever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import orjson
import zmq

REPLY_TIMEOUT_MS = 20_000


class LeanClient:
    """A bare DEALER client: encode, send, receive, decode; nothing else."""

    def __init__(self, endpoint: str, framing: str, request: dict[str, Any]) -> None:
        self.sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.framing = framing
        self.request = dict(request)
        self.next_id = 0

    def send(self) -> None:
        self.next_id += 1
        req = self.request
        req["id"] = self.next_id if self.framing == "corral" else str(self.next_id)
        body = orjson.dumps(req)
        if self.framing == "corral":
            self.sock.send_multipart([b"", body])
        else:
            self.sock.send(body)

    def recv(self) -> dict[str, Any]:
        if not self.sock.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
            raise TimeoutError(f"no reply within {REPLY_TIMEOUT_MS / 1000:g} s")
        frames = self.sock.recv_multipart()
        reply: dict[str, Any] = orjson.loads(frames[-1])
        return reply

    def call(self) -> dict[str, Any]:
        self.send()
        return self.recv()

    def check(self) -> None:
        """One call; raise if the answer is an error."""
        reply = self.call()
        if "error" in reply or reply.get("status") == "error":
            raise RuntimeError(f"error answer: {reply}")

    def pipelined(self, n: int, window: int) -> tuple[float, float]:
        """``n`` calls with up to ``window`` in flight; (start, end) monotonic times."""
        sent = done = 0
        t0 = time.monotonic()
        while done < n:
            while sent < n and sent - done < window:
                self.send()
                sent += 1
            self.recv()
            done += 1
            while done < sent and self.sock.poll(0, zmq.POLLIN):
                orjson.loads(self.sock.recv_multipart()[-1])
                done += 1
        return t0, time.monotonic()

    def sequential(self, n: int, budget_s: float) -> tuple[float, float, list[float]]:
        """Up to ``n`` calls one at a time within ``budget_s``; (start, end, latencies s)."""
        out: list[float] = []
        t0 = time.monotonic()
        deadline = t0 + budget_s
        for _ in range(n):
            t = time.perf_counter()
            self.call()
            out.append(time.perf_counter() - t)
            if time.monotonic() >= deadline:
                break
        return t0, time.monotonic(), out

    def close(self) -> None:
        self.sock.close(linger=0)


def worker() -> int:
    """The client process: serve commands from stdin until EOF or ``quit``."""
    client: LeanClient | None = None
    command: dict[str, Any] = {}
    for line in sys.stdin.buffer:
        command_in = orjson.loads(line)
        op = command_in.get("op")
        answer: dict[str, Any] = {"ok": True}
        try:
            if op == "prepare":
                command = command_in
                if client is not None:
                    client.close()
                client = LeanClient(command["endpoint"], command["framing"], command["request"])
                for _ in range(int(command.get("warmup", 20))):
                    client.check()
            elif op == "go":
                assert client is not None, "go before prepare"
                if command["mode"] == "pipe":
                    t0, t1 = client.pipelined(int(command["n"]), int(command["window"]))
                    answer.update(start=t0, end=t1, calls=int(command["n"]))
                else:
                    t0, t1, lat = client.sequential(int(command["n"]), float(command["budget"]))
                    answer.update(start=t0, end=t1, calls=len(lat), latencies=lat)
            elif op == "quit":
                break
        except Exception as exc:
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.buffer.write(orjson.dumps(answer) + b"\n")
        sys.stdout.buffer.flush()
    if client is not None:
        client.close()
    return 0


def child_env() -> dict[str, str]:
    """This environment, with the repository root on PYTHONPATH (for ``-m bench.*``)."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class WorkerPool:
    """``size`` client processes, started once and reused for every run."""

    def __init__(self, size: int) -> None:
        env = child_env()
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.clients"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(size)
        ]

    def _ask(self, procs: list[subprocess.Popen[bytes]], command: dict[str, Any]) -> list[Any]:
        line = orjson.dumps(command) + b"\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(line)
            p.stdin.flush()
        answers = []
        for p in procs:
            assert p.stdout is not None
            raw = p.stdout.readline()
            if not raw:
                raise RuntimeError(f"client process {p.pid} ended (exit {p.poll()})")
            answer = orjson.loads(raw)
            if not answer.get("ok"):
                raise RuntimeError(f"client process {p.pid}: {answer.get('error')}")
            answers.append(answer)
        return answers

    def pipelined(
        self,
        endpoint: str,
        framing: str,
        request: dict[str, Any],
        clients: int,
        calls_each: int,
        window: int = 32,
    ) -> float:
        """Calls per second of ``clients`` processes, each keeping ``window`` in flight."""
        answers = self._prepare_and_go(
            clients, endpoint, framing, request, mode="pipe", n=calls_each, window=window
        )
        start = min(a["start"] for a in answers)
        end = max(a["end"] for a in answers)
        total = sum(a["calls"] for a in answers)
        return total / (end - start) if end > start else float("nan")

    def sequential(
        self, endpoint: str, framing: str, request: dict[str, Any], n: int, budget_s: float
    ) -> list[float]:
        """Round-trip times (seconds) of one client calling one at a time."""
        answers = self._prepare_and_go(
            1, endpoint, framing, request, mode="seq", n=n, budget=budget_s
        )
        latencies: list[float] = answers[0]["latencies"]
        return latencies

    def _prepare_and_go(
        self, clients: int, endpoint: str, framing: str, request: dict[str, Any], **mode: Any
    ) -> list[dict[str, Any]]:
        """Hand the first ``clients`` processes their calls (``mode``: how), then
        start them all at once; their answers."""
        procs = self.procs[:clients]
        prepare = {"op": "prepare", "endpoint": endpoint, "framing": framing, "request": request}
        self._ask(procs, {**prepare, **mode})
        return self._ask(procs, {"op": "go"})

    def close(self) -> None:
        for p in self.procs:
            try:
                if p.stdin is not None:
                    p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def corral_request(method: str, params: dict[str, Any] | None) -> dict[str, Any]:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        request["params"] = params
    return request


if __name__ == "__main__":
    sys.exit(worker())
