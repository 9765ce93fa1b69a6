/**
 * The ZeroMQ side: JSON-RPC 2.0 over a DEALER socket (`["", request]` framing,
 * answers matched by `id`, so many calls can be in flight), events over SUB
 * sockets (`[topic, event]`). On a `tcp://` daemon the sockets are CURVE clients
 * when a key file is configured (see curve.js).
 */

import zmq from "zeromq";

import { ClosedError, CorralTimeoutError, ProtocolError, errorFromJson } from "./errors.js";
import { curveSocketOptions } from "./curve.js";
import { readDiscovery, resolveEndpoints, runtimeDir } from "./endpoints.js";
import { Follower, HEARTBEAT_TOPIC } from "./follower.js";

const { Dealer, Subscriber } = zmq;

const DEFAULT_TIMEOUT_MS = 10000;

/**
 * Events of the topics one SUB socket subscribed to.
 *
 * It also subscribes to `daemon/daemon.heartbeat`, so that `ready` can settle on
 * the first heartbeat: a SUB socket receives nothing until its subscriptions
 * reached the daemon (ZeroMQ's "slow joiner"), and subscriptions travel in order,
 * so once a heartbeat arrives every earlier subscription is in effect. Heartbeats
 * reach `onEvent` only when a prefix asked for them.
 */
export class Subscription {
  /** @type {Promise<void>} settles at the first heartbeat */
  ready;
  /** messages that were not `[topic, JSON object]` (ignored) */
  malformed = 0;

  #socket;
  #prefixes;
  #onEvent;
  #onError;
  #onClose;
  #closed = false;
  #loop;

  /**
   * @param {string} url events endpoint
   * @param {string[]} prefixes topic prefixes (`""` is everything)
   * @param {(topic: string, event: object) => unknown} onEvent called once per event, in
   *   order; when it returns a promise the next event waits for it
   * @param {{onError?: (error: Error) => void, onClose?: () => void, socketOptions?: object}} [options]
   *   `socketOptions`: more options of the SUB socket (CURVE keys)
   */
  constructor(url, prefixes, onEvent, options = {}) {
    this.#prefixes = [...new Set(prefixes)];
    this.#onEvent = onEvent;
    this.#onClose = options.onClose;
    this.#onError =
      options.onError ?? ((error) => console.error("corral-client: event handler failed:", error));
    this.#socket = new Subscriber({ linger: 0, ...(options.socketOptions ?? {}) });
    this.#socket.connect(url);
    const topics = this.#prefixes.some((p) => HEARTBEAT_TOPIC.startsWith(p))
      ? this.#prefixes
      : [...this.#prefixes, HEARTBEAT_TOPIC];
    for (const topic of topics) this.#socket.subscribe(topic);
    let markReady;
    this.ready = new Promise((resolve) => {
      markReady = resolve;
    });
    this.#loop = this.#read(markReady);
  }

  get prefixes() {
    return [...this.#prefixes];
  }

  get closed() {
    return this.#closed;
  }

  async #read(markReady) {
    try {
      for await (const frames of this.#socket) {
        if (this.#closed) break;
        if (frames.length !== 2) {
          this.malformed += 1;
          continue;
        }
        const topic = frames[0].toString("utf8");
        let event;
        try {
          event = JSON.parse(frames[1].toString("utf8"));
        } catch {
          this.malformed += 1;
          continue;
        }
        if (!event || typeof event !== "object" || Array.isArray(event)) {
          this.malformed += 1;
          continue;
        }
        if (topic === HEARTBEAT_TOPIC) markReady();
        if (this.#closed || !this.#prefixes.some((p) => topic.startsWith(p))) continue;
        try {
          await this.#onEvent(topic, event);
        } catch (error) {
          this.#onError(error);
        }
      }
    } catch (error) {
      if (!this.#closed) this.#onError(error);
    }
  }

  /** Close the socket; no event is delivered after this. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.close();
    this.#onClose?.();
    // The loop ends by itself once a handler still running has returned.
    this.#loop.catch(() => {});
  }
}

/**
 * A corral client: `call()` over one DEALER socket, `subscribe()` and `follow()`
 * over SUB sockets. Close it when done: open sockets keep node running.
 */
export class Client {
  /** @type {{rpc: string, events: string}} */
  endpoints;
  /** default timeout of a call, in ms */
  timeout;

  #dealer;
  #nextId = 1;
  #pending = new Map();
  #sending = Promise.resolve();
  #subscriptions = new Set();
  #followers = new Set();
  #closed = false;
  #reader;
  #eventsCurve;

  /**
   * @param {{rpc?: string, events?: string, timeout?: number, env?: Record<string, string | undefined>,
   *   curveServerKey?: string, curveKeyFile?: string}} [options]
   *   endpoints not given are resolved from CORRAL_RPC / CORRAL_EVENTS, the
   *   discovery file, the defaults; for a tcp daemon, `curveKeyFile` (the client's
   *   `.key_secret`, else CORRAL_CURVE_KEY_FILE) and `curveServerKey` (else
   *   CORRAL_CURVE_SERVER_KEY, else endpoints.json) make the sockets CURVE clients
   */
  constructor(options = {}) {
    const env = options.env ?? process.env;
    this.endpoints = resolveEndpoints(options, env);
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    let discovery;
    const found = () => (discovery ??= readDiscovery(runtimeDir(env)));
    const curve = (url) =>
      url.startsWith("tcp://") ? curveSocketOptions(url, options, env, found()) : {};
    const rpcCurve = curve(this.endpoints.rpc);
    this.#eventsCurve = curve(this.endpoints.events);
    // immediate: queue requests only on a live connection, so a request that
    // could not be sent before its deadline is never delivered later.
    this.#dealer = new Dealer({ linger: 0, immediate: true, ...rpcCurve });
    this.#dealer.connect(this.endpoints.rpc);
    this.#reader = this.#read();
  }

  get closed() {
    return this.#closed;
  }

  /**
   * Call `method`; resolves with its `result`, rejects with a typed RpcError
   * (`code`, `reason`, `data`), a CorralTimeoutError or a ClosedError.
   * @param {string} method
   * @param {object} [params] by name; omitted when undefined
   * @param {{timeout?: number}} [options] ms
   * @returns {Promise<any>}
   */
  call(method, params, { timeout } = {}) {
    if (this.#closed) return Promise.reject(new ClosedError("client is closed"));
    const ms = timeout ?? this.timeout;
    const id = this.#nextId++;
    const request = { jsonrpc: "2.0", id, method };
    if (params !== undefined) request.params = params;
    const body = JSON.stringify(request);
    const deadline = Date.now() + ms;
    return new Promise((resolve, reject) => {
      const entry = { method, resolve, reject, timer: undefined, sent: false };
      entry.timer = setTimeout(() => {
        this.#pending.delete(id);
        const what = entry.sent
          ? `no answer from ${this.endpoints.rpc} within ${ms} ms`
          : `cannot reach ${this.endpoints.rpc} within ${ms} ms (is corral running?)`;
        reject(new CorralTimeoutError(`${method}: ${what}`, { method, timeout: ms }));
      }, ms);
      this.#pending.set(id, entry);
      this.#send(body, deadline, () => this.#pending.get(id) === entry).then(
        () => {
          entry.sent = true;
        },
        () => {
          if (this.#pending.get(id) !== entry) return;
          this.#pending.delete(id);
          clearTimeout(entry.timer);
          reject(
            this.#closed
              ? new ClosedError("client is closed")
              : new CorralTimeoutError(
                  `${method}: cannot reach ${this.endpoints.rpc} (is corral running?)`,
                  {
                    method,
                    timeout: ms,
                  },
                ),
          );
        },
      );
    });
  }

  /**
   * Send a notification (no id): executed by the daemon, never answered.
   * @param {string} method
   * @param {object} [params]
   * @param {{timeout?: number}} [options] ms to wait for the send
   */
  async notify(method, params, { timeout } = {}) {
    if (this.#closed) throw new ClosedError("client is closed");
    const request = { jsonrpc: "2.0", method };
    if (params !== undefined) request.params = params;
    await this.#send(JSON.stringify(request), Date.now() + (timeout ?? this.timeout));
  }

  /**
   * Sends are serialised: a ZeroMQ socket takes one send at a time. A request
   * whose caller gave up while it waited for its turn is not sent at all.
   */
  #send(body, deadline, wanted = () => true) {
    const step = this.#sending.then(async () => {
      if (this.#closed) throw new ClosedError("client is closed");
      if (!wanted()) return;
      const remaining = Math.max(1, Math.floor(deadline - Date.now()));
      this.#dealer.sendTimeout = remaining;
      await this.#dealer.send(["", body]);
    });
    this.#sending = step.catch(() => {});
    return step;
  }

  async #read() {
    try {
      for await (const frames of this.#dealer) {
        this.#dispatch(frames);
      }
    } catch (error) {
      if (!this.#closed) this.#failAll(error);
    }
  }

  #dispatch(frames) {
    let body;
    if (frames.length === 2 && frames[0].length === 0) body = frames[1];
    else if (frames.length === 1) body = frames[0];
    else return;
    let reply;
    try {
      reply = JSON.parse(body.toString("utf8"));
    } catch {
      return;
    }
    if (!reply || typeof reply !== "object" || Array.isArray(reply)) return;
    let id = reply.id;
    if (id === null && reply.error && this.#pending.size === 1) {
      // an error about a request the daemon could not read: ours, the only one
      id = this.#pending.keys().next().value;
    }
    const entry = this.#pending.get(id);
    if (!entry) return; // late (timed out) or not ours
    this.#pending.delete(id);
    clearTimeout(entry.timer);
    if (reply.error !== undefined) entry.reject(errorFromJson(reply.error, entry.method));
    else if ("result" in reply) entry.resolve(reply.result);
    else entry.reject(new ProtocolError(`${entry.method}: answer without result or error`));
  }

  #failAll(error) {
    for (const [id, entry] of this.#pending) {
      this.#pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(error);
    }
  }

  /**
   * Receive the events of `prefixes` (`""` is everything). Wait for
   * `subscription.ready` before relying on seeing everything.
   * @param {string | string[]} prefixes
   * @param {(topic: string, event: object) => unknown} onEvent
   * @param {{onError?: (error: Error) => void}} [options]
   * @returns {Subscription}
   */
  subscribe(prefixes, onEvent, options = {}) {
    if (this.#closed) throw new ClosedError("client is closed");
    const list = typeof prefixes === "string" ? [prefixes] : prefixes;
    const subscription = new Subscription(this.endpoints.events, list, onEvent, {
      ...options,
      socketOptions: this.#eventsCurve,
      onClose: () => this.#subscriptions.delete(subscription),
    });
    this.#subscriptions.add(subscription);
    return subscription;
  }

  /**
   * Follow a project's current session (`"my-project"` or `{projectId}`) or one
   * session (`{sessionId, projectId?}`): resolves once the snapshot is applied.
   * @param {string | {projectId?: string, sessionId?: string}} target
   * @param {import("./follower.js").FollowOptions} [options]
   * @returns {Promise<Follower>}
   */
  follow(target, options = {}) {
    if (this.#closed) return Promise.reject(new ClosedError("client is closed"));
    const follower = new Follower(this, target, options);
    for (const old of this.#followers) if (old.closed) this.#followers.delete(old);
    this.#followers.add(follower);
    return follower.start();
  }

  /** Close every socket; pending calls reject with ClosedError. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#followers].map((f) => f.close()));
    await Promise.all([...this.#subscriptions].map((s) => s.close()));
    this.#failAll(new ClosedError("client closed"));
    this.#dealer.close();
    await this.#reader;
  }
}

/**
 * A client whose daemon answered `daemon.ping`.
 * @param {{rpc?: string, events?: string, timeout?: number, env?: Record<string, string | undefined>,
 *   curveServerKey?: string, curveKeyFile?: string}} [options]
 * @returns {Promise<Client>}
 */
export async function connect(options = {}) {
  const client = new Client(options);
  try {
    await client.call("daemon.ping", undefined, { timeout: options.timeout ?? 5000 });
  } catch (error) {
    await client.close();
    throw error;
  }
  return client;
}
