"""ping: ``daemon.ping`` (answered by the router thread itself), pipelined from 1
and 4 client processes and sequentially, beside the same bare ROUTER echo as
``rpc`` (see :mod:`bench.rpc`). ``python -m bench.ping [--quick]``."""

from __future__ import annotations

from bench.common import Context, Row, standalone
from bench.rpc import measure_method


def run(ctx: Context) -> list[Row]:
    return measure_method(ctx, "ping", "daemon.ping")


if __name__ == "__main__":
    raise SystemExit(standalone(run, __doc__.splitlines()[0]))
