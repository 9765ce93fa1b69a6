"""The RPC baseline: a bare pyzmq ROUTER that decodes each request with orjson,
dispatches on its method through a dict and encodes the same reply corral gave.

Run as its own process (``python -m bench.echo ENDPOINT REPLIES.json``, where
the file maps each method to the ``result`` to answer); it prints ``ready``
once bound and serves until SIGTERM. :class:`EchoServer` starts and stops one
by PID.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import zmq

from bench.clients import child_env


def serve(endpoint: str, replies: dict[str, Any]) -> int:
    def answer(result: Any) -> Callable[[Any], Any]:
        return lambda _params: result

    handlers = {method: answer(result) for method, result in replies.items()}
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        ident, empty, body = sock.recv_multipart()
        request = orjson.loads(body)
        result = handlers[request["method"]](request.get("params"))
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        sock.send_multipart([ident, empty, orjson.dumps(reply)])


class EchoServer:
    """The baseline server in a child process, stopped by its PID."""

    def __init__(self, tmp: Path, replies: dict[str, Any]) -> None:
        self.endpoint = f"ipc://{tmp}/echo.sock"
        path = tmp / "echo-replies.json"
        path.write_bytes(orjson.dumps(replies))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", self.endpoint, str(path)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.close()
            raise RuntimeError("the echo server did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], orjson.loads(Path(sys.argv[2]).read_bytes())))
