#!/usr/bin/env node
// Start a session of corral's built-in `mock` agent and follow it until it is
// done, printing each message as one JSON line on stdout.
//
//   node examples/follow-mock.js [projectId] [providerConfig as JSON]
//
// The endpoints come from CORRAL_RPC / CORRAL_EVENTS, else the daemon's
// endpoints.json, else the defaults. Exit status: 0 when the session ended
// `done`, 1 when it ended `error`, 2 when something else went wrong.

import { connect } from "corral-client";

const projectId = process.argv[2] ?? "node-demo";
const providerConfig = process.argv[3] ? JSON.parse(process.argv[3]) : { delayMs: 0 };

async function main() {
  const client = await connect();
  try {
    const started = await client.call("agent.start", {
      projectId,
      provider: "mock",
      prompt: "Say hello from Node.js",
      providerConfig,
    });
    // Following after the start is safe: the follower takes the snapshot from
    // storage first, then applies only the live events that come after it.
    const follower = await client.follow(
      { projectId, sessionId: started.sessionId },
      { onMessage: (message) => process.stdout.write(`${JSON.stringify(message)}\n`) },
    );
    try {
      const outcome = await follower.untilDone(started.sessionId, { timeout: 120000 });
      const stats = JSON.stringify(follower.stats);
      process.stderr.write(`session ${outcome.sessionId} ${outcome.status} ${stats}\n`);
      return outcome.status === "done" ? 0 : 1;
    } finally {
      await follower.close();
    }
  } finally {
    await client.close();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    const reason = error.reason ? ` (${error.reason})` : "";
    process.stderr.write(`follow-mock: ${error.name}${reason}: ${error.message}\n`);
    process.exitCode = 2;
  },
);
