"""The Node.js client against a CURVE daemon: with its key file (the server key from
endpoints.json, or given) it gets RPC answers and events; an unknown key and a plain
client get nothing."""

from __future__ import annotations

import json
from pathlib import Path

import zmq.auth

from tests.integration.test_curve import CurveDaemon, curve_daemon  # noqa: F401
from tests.integration.test_node_client import (  # noqa: F401
    RUN_TIMEOUT_S,
    _node_env,
    _run,
    _tool,
    node_client,
    node_modules,
)

SCRIPT = """
import { Client, connect } from "corral-client";
const out = {};
const within = (ms, promise) =>
  Promise.race([promise, new Promise((_, no) => setTimeout(() => no(new Error("timeout")), ms))]);

const client = await connect({ timeout: 5000 });
out.pong = (await client.call("daemon.ping")).pong;
let heartbeat = null;
const sub = client.subscribe("daemon/", (topic, event) => { heartbeat ??= event.event; });
await within(5000, sub.ready);
out.heartbeat = heartbeat;
await client.close();

const given = new Client({ timeout: 5000, curveKeyFile: process.env.KEY_FILE,
  curveServerKey: process.env.SERVER_KEY, env: { CORRAL_RPC: process.env.CORRAL_RPC,
  CORRAL_EVENTS: process.env.CORRAL_EVENTS } });
out.given = (await given.call("daemon.ping")).pong;
await given.close();

async function refused(options) {
  const c = new Client({ timeout: 1500, ...options });
  let answer;
  try { await c.call("daemon.ping"); answer = "answered"; } catch (e) { answer = e.name; }
  let events = 0;
  const s = c.subscribe("", () => { events += 1; });
  await new Promise((ok) => setTimeout(ok, 1500));
  await c.close();
  return { answer, events };
}
out.stranger = await refused({ curveKeyFile: process.env.STRANGER_FILE });
out.plain = await refused({ env: { CORRAL_RPC: process.env.CORRAL_RPC,
  CORRAL_EVENTS: process.env.CORRAL_EVENTS } });
try { new Client({ curveKeyFile: process.env.PUBLIC_FILE }); out.publicOnly = "accepted"; }
catch (e) { out.publicOnly = e.name + ": " + e.message; }
process.stdout.write(JSON.stringify(out));
"""


def test_node_client_with_curve(
    node_client: Path,  # noqa: F811
    curve_daemon: CurveDaemon,  # noqa: F811
    short_tmp: Path,
) -> None:
    stranger_dir = short_tmp / "stranger"
    stranger_dir.mkdir()
    _public, stranger_secret = zmq.auth.create_certificates(stranger_dir, "stranger")
    env = _node_env(
        XDG_RUNTIME_DIR=str(curve_daemon.runtime.parent),
        CORRAL_RPC=curve_daemon.rpc,
        CORRAL_EVENTS=curve_daemon.events,
        CORRAL_CURVE_KEY_FILE=str(curve_daemon.keys / "client.key_secret"),
        KEY_FILE=str(curve_daemon.keys / "client.key_secret"),
        SERVER_KEY=curve_daemon.server_key().decode(),
        STRANGER_FILE=str(stranger_secret),
        PUBLIC_FILE=str(curve_daemon.keys / "client.key"),
    )
    ran = _run(
        [_tool("node"), "--input-type=module", "-e", SCRIPT], RUN_TIMEOUT_S, node_client, env
    )
    assert ran.returncode == 0, ran.explain()
    out = json.loads(ran.stdout)
    assert out["pong"] is True and out["given"] is True
    assert out["heartbeat"] == "daemon.heartbeat"
    assert out["stranger"] == {"answer": "CorralTimeoutError", "events": 0}
    assert out["plain"] == {"answer": "CorralTimeoutError", "events": 0}
    assert out["publicOnly"].startswith("CurveError: ") and "no secret key" in out["publicOnly"]
