/**
 * Following one session (or a project's current session) with the contract's
 * resync rule: subscribe first, wait until the subscription is in effect, take
 * a snapshot with `session.messages.load(afterSeq)`, then apply only events
 * whose seqIds follow on. Any sign of a missed event (a jump in `eseq`, a new
 * `boot`, a seqId gap, a heartbeat whose `lastSeqIds` is ahead) reloads from
 * storage after the last seqId held. What arrives twice is dropped by seqId, so
 * the follower ends with exactly the stored sequence, in seqId order.
 *
 * The follower knows nothing of ZeroMQ: it talks to a *transport* with
 *
 *   call(method, params, {timeout}) -> Promise<result>
 *   subscribe(prefixes, onEvent(topic, frame)) -> {ready: Promise, close()}
 *
 * where `ready` settles once the first `daemon.heartbeat` arrived. {@link Client}
 * is such a transport; the unit tests use a fake one.
 */

import { ClosedError, CorralTimeoutError, ProtocolError } from "./errors.js";

export const HEARTBEAT_TOPIC = "daemon/daemon.heartbeat";
export const TERMINAL = new Set(["done", "error"]);

/** @typedef {{id: string, seqId: number, role: string, content: string, timestamp: number}} AgentMessage */
/** @typedef {{sessionId: string, status: string, error?: string}} Outcome */

/**
 * @typedef {object} FollowOptions
 * @property {(message: AgentMessage, sessionId: string) => void} [onMessage]
 *   every message once, in seqId order
 * @property {(status: Outcome) => void} [onStatus] the followed session's status changed
 * @property {(sessionId: string, previous: string | null) => void} [onSession]
 *   a project follower moved to another session (its seqIds start again at 1)
 * @property {(info: {sessionId: string | null, reason: string, afterSeq: number}) => void} [onResync]
 *   a reload from storage starts (reason: snapshot, eseq, boot, seqId, heartbeat, retry,
 *   truncated)
 * @property {(error: Error) => void} [onError] a failed reload; it is retried on the next heartbeat
 * @property {boolean} [everything=true] subscribe to every topic so that `eseq`
 *   jumps are visible; false subscribes to the project's topic (or all projects
 *   when only a sessionId is known) and relies on seqIds and heartbeats
 * @property {number} [readyTimeout=10000] ms to wait for the first heartbeat
 * @property {number} [callTimeout] ms per RPC (the transport's default otherwise)
 * @property {number} [pageSize=500] `limit` of each `session.messages.load`
 * @property {boolean} [keepMessages=true] keep the transcript in `follower.messages`
 */

/**
 * @param {string | {projectId?: string, sessionId?: string}} target
 * @returns {{projectId: string | null, sessionId: string | null}}
 */
function parseTarget(target) {
  if (typeof target === "string") return { projectId: target, sessionId: null };
  const projectId = target?.projectId ?? null;
  const sessionId = target?.sessionId ?? null;
  if (!projectId && !sessionId) {
    throw new TypeError("follow() needs a projectId or a sessionId");
  }
  return { projectId, sessionId };
}

function withTimeout(promise, ms, what) {
  if (!(ms > 0) || !Number.isFinite(ms)) return promise;
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new CorralTimeoutError(`${what} after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class Follower {
  /** @type {string | null} the session followed now */
  sessionId = null;
  /** @type {string | null} */
  projectId = null;
  /** @type {string | null} last status known for the session */
  status = null;
  /** @type {number} the last seqId applied */
  lastSeq = 0;
  /** @type {AgentMessage[]} the transcript of the current session (when keepMessages) */
  messages = [];
  /** counters, for tests and diagnostics */
  stats = {
    events: 0, // events handled (every topic subscribed to, heartbeats included)
    live: 0, // messages applied from events
    loaded: 0, // messages applied from session.messages.load
    duplicates: 0, // messages dropped because their seqId was applied already
    resyncs: 0,
    eseqGaps: 0,
    seqGaps: 0,
  };

  #transport;
  #options;
  #followProject;
  #subscription = null;
  #chain = Promise.resolve();
  #closed = false;
  #boot = undefined;
  #eseq = undefined;
  #retry = null;
  #pending = new Map();
  #seen = new Set();
  #outcomes = new Map();
  #waiters = [];

  /**
   * @param {{call: Function, subscribe: Function}} transport
   * @param {string | {projectId?: string, sessionId?: string}} target a projectId
   *   (follows the project's current session, and the next ones), or
   *   `{sessionId}` (one session; add its `projectId` when known)
   * @param {FollowOptions} [options]
   */
  constructor(transport, target, options = {}) {
    const { projectId, sessionId } = parseTarget(target);
    this.#transport = transport;
    this.#options = {
      everything: true,
      readyTimeout: 10000,
      pageSize: 500,
      keepMessages: true,
      ...options,
    };
    this.projectId = projectId;
    this.sessionId = sessionId;
    this.#followProject = sessionId === null;
    if (sessionId) this.#seen.add(sessionId);
  }

  /** The topic prefixes this follower subscribes to. */
  get prefixes() {
    if (this.#options.everything) return [""];
    const topic = this.projectId ? `project/${this.projectId}/` : "project/";
    return [topic, HEARTBEAT_TOPIC];
  }

  /**
   * Subscribe, wait for the subscription to be in effect, take the snapshot.
   * Resolves with the follower once the snapshot is applied.
   * @returns {Promise<Follower>}
   */
  async start() {
    if (this.#subscription) throw new Error("follower already started");
    let ready;
    const gate = new Promise((resolve) => {
      ready = resolve;
    });
    // Events queue behind the snapshot: nothing falls between the two.
    this.#chain = gate.then(() => this.#resync("snapshot"));
    const initial = this.#chain;
    this.#chain = this.#chain.catch(() => {});
    // The handler queues and returns at once: the transport keeps reading (the
    // heartbeat that opens the gate must get through while events wait).
    this.#subscription = this.#transport.subscribe(this.prefixes, (topic, frame) => {
      this.#enqueue(() => this.#handle(topic, frame));
    });
    try {
      await withTimeout(
        Promise.resolve(this.#subscription.ready),
        this.#options.readyTimeout,
        "no daemon heartbeat",
      );
      ready();
      await initial;
    } catch (error) {
      await this.close();
      throw error;
    }
    return this;
  }

  /**
   * Resolves when the session ends (`done` or `error`) and every one of its
   * messages has been applied: `{sessionId, status, error?}`.
   * @param {string} [sessionId] which session; default: the one followed now, or
   *   (for a project without one) the next one
   * @param {{timeout?: number}} [options]
   * @returns {Promise<Outcome>}
   */
  untilDone(sessionId, { timeout } = {}) {
    if (this.#closed) return Promise.reject(new ClosedError("follower is closed"));
    const key = sessionId ?? this.sessionId;
    const known = key ? this.#outcomes.get(key) : undefined;
    if (known) return Promise.resolve(known);
    const waiting = new Promise((resolve, reject) => {
      this.#waiters.push({ key: key ?? null, resolve, reject });
    });
    return timeout ? withTimeout(waiting, timeout, "session not done") : waiting;
  }

  /** Resolves once every event received so far (and the reloads they caused) is applied. */
  async flush() {
    let seen;
    do {
      seen = this.#chain;
      await seen;
    } while (seen !== this.#chain);
  }

  /** Unsubscribe; pending `untilDone` promises reject with ClosedError. */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const waiter of this.#waiters.splice(0)) {
      waiter.reject(new ClosedError("follower closed"));
    }
    await this.#subscription?.close();
  }

  get closed() {
    return this.#closed;
  }

  // -- the serial queue: every event and reload runs one after the other -------

  #enqueue(step) {
    if (this.#closed) return this.#chain;
    this.#chain = this.#chain
      .then(() => (this.#closed ? undefined : step()))
      .catch((error) => {
        this.#retry ??= "retry";
        this.#report(error);
      });
    return this.#chain;
  }

  #report(error) {
    if (this.#closed) return;
    if (this.#options.onError) this.#options.onError(error);
  }

  #call(method, params) {
    const options = this.#options.callTimeout ? { timeout: this.#options.callTimeout } : {};
    return this.#transport.call(method, params, options);
  }

  // -- events -------------------------------------------------------------------

  async #handle(topic, frame) {
    if (!frame || typeof frame !== "object") return;
    this.stats.events += 1;
    let reason = this.#trackEseq(frame);
    const data = frame.data && typeof frame.data === "object" ? frame.data : {};
    switch (frame.event) {
      case "agent.message":
        if (this.#mine(frame, data)) await this.#onMessages(data.messages);
        break;
      case "agent.status":
        if (this.#mine(frame, data)) await this.#setStatus(data);
        break;
      case "daemon.heartbeat": {
        const last = this.sessionId ? data.lastSeqIds?.[this.sessionId] : undefined;
        if (typeof last === "number" && last > this.lastSeq) {
          this.stats.seqGaps += 1;
          reason ??= "heartbeat";
        }
        reason ??= this.#retry;
        break;
      }
      default:
        break;
    }
    if (reason) await this.#resync(reason);
  }

  /** The reason to resync when `frame` shows that events were missed, else null. */
  #trackEseq(frame) {
    if (!this.#options.everything) return null;
    const { boot, eseq } = frame;
    if (typeof eseq !== "number" || boot === undefined) return null;
    if (boot !== this.#boot) {
      const restarted = this.#boot !== undefined;
      this.#boot = boot;
      this.#eseq = eseq;
      return restarted ? "boot" : null;
    }
    const last = this.#eseq;
    if (eseq <= last) return null; // a repeat: nothing new
    this.#eseq = eseq;
    if (eseq !== last + 1) {
      this.stats.eseqGaps += 1;
      return "eseq";
    }
    return null;
  }

  /** Whether an agent.* event is about the followed session (switching project sessions). */
  #mine(frame, data) {
    const sid = data.sessionId;
    if (typeof sid !== "string") return false;
    if (sid === this.sessionId) {
      if (!this.projectId && typeof frame.projectId === "string") this.projectId = frame.projectId;
      return true;
    }
    if (this.#followProject && frame.projectId === this.projectId && !this.#seen.has(sid)) {
      this.#switchTo(sid);
      return true;
    }
    return false;
  }

  #switchTo(sessionId) {
    const previous = this.sessionId;
    this.sessionId = sessionId;
    this.#seen.add(sessionId);
    this.status = null;
    this.lastSeq = 0;
    this.messages = [];
    this.#pending.clear();
    if (this.#options.onSession) this.#options.onSession(sessionId, previous);
  }

  /** Apply one event's messages in order; a seqId gap is filled from storage first. */
  async #onMessages(messages) {
    if (!Array.isArray(messages)) return;
    for (const message of messages) {
      if (message?.truncated === true && message.seqId === this.lastSeq + 1) {
        // The event carries its text cut (over 16 KiB): load it whole.
        await this.#resync("truncated");
        if (message.seqId <= this.lastSeq) continue;
      }
      if (this.#offer(message, "live")) continue;
      this.stats.seqGaps += 1;
      await this.#resync("seqId");
      if (!this.#offer(message, "live")) {
        // Storage does not have it yet (never so with a daemon that commits
        // before it publishes): hold it, and look again at the next heartbeat.
        this.#pending.set(message.seqId, message);
        this.#retry ??= "seqId";
      }
    }
  }

  /** Apply `message` if it is the next one; false when it leaves a gap. */
  #offer(message, source) {
    const seq = message?.seqId;
    if (typeof seq !== "number") return true; // not a message: ignore it
    if (seq <= this.lastSeq) {
      this.stats.duplicates += 1;
      return true;
    }
    if (seq !== this.lastSeq + 1) return false;
    this.#apply(message, source);
    while (this.#pending.has(this.lastSeq + 1)) {
      const next = this.#pending.get(this.lastSeq + 1);
      this.#pending.delete(this.lastSeq + 1);
      this.#apply(next, "live");
    }
    for (const key of this.#pending.keys()) if (key <= this.lastSeq) this.#pending.delete(key);
    return true;
  }

  #apply(message, source) {
    this.lastSeq = message.seqId;
    this.stats[source] += 1;
    if (this.#options.keepMessages) this.messages.push(message);
    if (this.#options.onMessage) this.#options.onMessage(message, this.sessionId);
  }

  async #setStatus({ status, error }) {
    if (typeof status !== "string") return;
    const sessionId = this.sessionId;
    const changed = status !== this.status;
    this.status = status;
    const outcome = {
      sessionId,
      status,
      ...(error !== undefined && error !== null ? { error } : {}),
    };
    if (changed && this.#options.onStatus) this.#options.onStatus(outcome);
    if (!TERMINAL.has(status)) {
      this.#outcomes.delete(sessionId);
      return;
    }
    // The final messages were committed before the status: take them all, then settle.
    await this.#catchUp();
    if (this.sessionId !== sessionId || this.#outcomes.has(sessionId)) return;
    this.#outcomes.set(sessionId, outcome);
    this.#waiters = this.#waiters.filter((waiter) => {
      if (waiter.key === null || waiter.key === sessionId) {
        waiter.resolve(outcome);
        return false;
      }
      return true;
    });
  }

  // -- reloading from storage ---------------------------------------------------

  /**
   * The resync rule: learn the current session (project followers), its status,
   * then every stored message after `lastSeq`.
   */
  async #resync(reason) {
    this.stats.resyncs += 1;
    if (this.#options.onResync) {
      this.#options.onResync({ sessionId: this.sessionId, reason, afterSeq: this.lastSeq });
    }
    let session;
    if (this.#followProject) {
      const got = await this.#call("session.get", { projectId: this.projectId });
      session = got?.session ?? null;
      if (session && session.sessionId !== this.sessionId && !this.#seen.has(session.sessionId)) {
        this.#switchTo(session.sessionId);
      }
      if (!session || session.sessionId !== this.sessionId) session = undefined;
    }
    if (!this.sessionId) {
      this.#retry = null;
      return;
    }
    if (session === undefined) session = await this.#findSession();
    await this.#catchUp();
    this.#retry = this.#pending.size > 0 ? "seqId" : null;
    if (session) await this.#setStatus(session);
  }

  /** The stored Session of the followed session, or null when it cannot be found. */
  async #findSession() {
    const params = this.projectId ? { projectId: this.projectId, limit: 500 } : { limit: 500 };
    const got = await this.#call("session.list", params);
    const found = (got?.sessions ?? []).find((s) => s.sessionId === this.sessionId) ?? null;
    if (found && !this.projectId) this.projectId = found.projectId ?? null;
    return found;
  }

  /** Page through `session.messages.load(afterSeq = lastSeq)` until `hasMore` is false. */
  async #catchUp() {
    const sessionId = this.sessionId;
    for (;;) {
      const page = await this.#call("session.messages.load", {
        sessionId,
        afterSeq: this.lastSeq,
        limit: this.#options.pageSize,
      });
      if (this.sessionId !== sessionId) return;
      const messages = Array.isArray(page?.messages) ? page.messages : [];
      for (const message of messages) {
        if (!this.#offer(message, "loaded")) {
          throw new ProtocolError(
            `session.messages.load skipped from seqId ${this.lastSeq} to ${message.seqId}`,
          );
        }
      }
      if (!page?.hasMore || messages.length === 0) return;
    }
  }
}
