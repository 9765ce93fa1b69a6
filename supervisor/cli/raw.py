"""The protocol itself: `describe` lists every method, `call` sends any of them raw."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from corral.supervisor.cli.common import Ctx, client_command

PANEL = "Protocol"

app = typer.Typer()


def _params_line(schema: dict[str, Any]) -> str:
    props = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    return " ".join(name if name in required else f"[{name}]" for name in props) or "-"


@client_command(app, panel=PANEL)
def describe(cx: Ctx) -> int | None:
    """Every method the daemon answers (rpc.describe): params and errors; --json for the schemas."""
    result = cx.call("rpc.describe")
    if cx.json:
        cx.out.json_doc(result)
        return None
    from corral.supervisor.cli.render import simple_table

    table = simple_table(("METHOD", "PARAMS", "ERRORS", "WHAT"), cx.out.plain)
    for name, spec in sorted((result.get("methods") or {}).items()):
        params = spec.get("params") or {}
        table.add_row(
            name,
            _params_line(params),
            ", ".join(spec.get("errors") or []) or "-",
            str(params.get("description", "")),
        )
    cx.out.print(table)
    events = ", ".join(sorted(result.get("events") or {}))
    cx.out.line(f"protocol version {result.get('protocolVersion')}; events: {events}")
    return None


@client_command(app, panel=PANEL)
def call(
    cx: Ctx,
    method: Annotated[
        str, typer.Argument(metavar="METHOD", help="Method name, e.g. session.list.")
    ],
    params: Annotated[
        str | None, typer.Argument(metavar="JSON_PARAMS", help="Params as a JSON object.")
    ] = None,
) -> int | None:
    """Call any method; prints its result as JSON."""
    parsed: dict[str, Any] | None = None
    if params is not None:
        try:
            value = orjson.loads(params)
        except ValueError as exc:
            raise typer.BadParameter(f"not JSON: {exc}", param_hint="JSON_PARAMS") from None
        if not isinstance(value, dict):
            raise typer.BadParameter("must be a JSON object", param_hint="JSON_PARAMS")
        parsed = value
    cx.out.json_doc(cx.call(method, parsed, slow=True))
    return None
