/**
 * corral-client: a Node.js client for the corral daemon's protocol (version 1).
 *
 *   import { connect } from "corral-client";
 *   const client = await connect();            // CORRAL_RPC / CORRAL_EVENTS / endpoints.json
 *   const info = await client.call("daemon.info");
 *   const follower = await client.follow("my-project", { onMessage: (m) => console.log(m) });
 *
 * See README.md.
 */

export { Client, Subscription, connect } from "./src/client.js";
export { DISCOVERY_FILE, readDiscovery, resolveEndpoints, runtimeDir } from "./src/endpoints.js";
export * from "./src/errors.js";
export { Follower, HEARTBEAT_TOPIC, TERMINAL } from "./src/follower.js";
