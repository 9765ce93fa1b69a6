/**
 * Where the daemon listens, resolved the way every corral client does it.
 *
 * Each endpoint on its own, from the first of: what the caller passed,
 * `CORRAL_RPC` / `CORRAL_EVENTS`, the discovery file `endpoints.json` that the
 * daemon writes in its runtime directory, the default ipc sockets of that
 * directory. The runtime directory is `$XDG_RUNTIME_DIR/corral` (a relative
 * `XDG_RUNTIME_DIR` is ignored), else `/tmp/corral-$UID`.
 */

import { readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";

export const DISCOVERY_FILE = "endpoints.json";

/**
 * @param {Record<string, string | undefined>} [env]
 * @returns {string}
 */
export function runtimeDir(env = process.env) {
  const base = env.XDG_RUNTIME_DIR;
  if (base && isAbsolute(base)) return join(base, "corral");
  const uid = typeof process.getuid === "function" ? process.getuid() : 0;
  return `/tmp/corral-${uid}`;
}

/**
 * The daemon's discovery file, or null when it is absent or unreadable.
 * @param {string} [dir] runtime directory
 * @returns {{rpc?: string, events?: string, pid?: number, boot?: string, version?: string} | null}
 */
export function readDiscovery(dir = runtimeDir()) {
  try {
    const doc = JSON.parse(readFileSync(join(dir, DISCOVERY_FILE), "utf8"));
    return doc && typeof doc === "object" && !Array.isArray(doc) ? doc : null;
  } catch {
    return null;
  }
}

const nonEmpty = (value) => (typeof value === "string" && value !== "" ? value : undefined);

/**
 * The endpoints a client connects to.
 * @param {{rpc?: string, events?: string}} [explicit]
 * @param {Record<string, string | undefined>} [env]
 * @returns {{rpc: string, events: string}}
 */
export function resolveEndpoints(explicit = {}, env = process.env) {
  let rpc = nonEmpty(explicit.rpc) ?? nonEmpty(env.CORRAL_RPC);
  let events = nonEmpty(explicit.events) ?? nonEmpty(env.CORRAL_EVENTS);
  if (rpc && events) return { rpc, events };
  const dir = runtimeDir(env);
  const found = readDiscovery(dir) ?? {};
  rpc ??= nonEmpty(found.rpc) ?? `ipc://${join(dir, "rpc.sock")}`;
  events ??= nonEmpty(found.events) ?? `ipc://${join(dir, "events.sock")}`;
  return { rpc, events };
}
