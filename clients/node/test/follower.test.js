// The follower's resync logic against a fake transport: no daemon, no ZeroMQ.
// Run with `node --test test/` (from clients/node).

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";

import { errorFromJson, InvalidParams, NotFound, RpcError } from "../src/errors.js";
import { resolveEndpoints, runtimeDir } from "../src/endpoints.js";
import { Follower } from "../src/follower.js";

const tick = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A daemon in memory: sessions with stored messages, and a PUB side whose
 * events the test can deliver or lose. Each published event takes the next
 * eseq, delivered or not, as the real daemon's do.
 */
class FakeDaemon {
  boot = "boot-1";
  eseq = 0;
  sessions = new Map(); // sessionId -> {session, messages}
  current = new Map(); // projectId -> sessionId
  subscribers = [];
  calls = [];
  /** called (and awaited) at the start of each RPC: lets a test act mid-call */
  beforeCall = null;
  failCalls = 0;

  addSession(projectId, sessionId, status = "running") {
    const session = { sessionId, projectId, provider: "mock", status, lastSeqId: 0 };
    this.sessions.set(sessionId, { session, messages: [] });
    this.current.set(projectId, sessionId);
    return session;
  }

  /** Commit `n` messages; returns them (not published). */
  commit(sessionId, n = 1) {
    const entry = this.sessions.get(sessionId);
    const out = [];
    for (let i = 0; i < n; i++) {
      const seqId = entry.messages.length + 1;
      const message = {
        id: `m${seqId}`,
        seqId,
        role: "assistant",
        content: `text ${seqId}`,
        timestamp: seqId,
      };
      entry.messages.push(message);
      out.push(message);
    }
    entry.session.lastSeqId = entry.messages.length;
    return out;
  }

  /** Publish one event; `lost: true` takes an eseq but reaches nobody. */
  publish(event, data, { projectId, lost = false, topic } = {}) {
    this.eseq += 1;
    const frame = { event, boot: this.boot, eseq: this.eseq, ts: Date.now(), data };
    if (projectId) frame.projectId = projectId;
    const name = topic ?? (projectId ? `project/${projectId}/${event}` : `daemon/${event}`);
    if (lost) return frame;
    for (const sub of this.subscribers) {
      if (sub.closed) continue;
      if (name === "daemon/daemon.heartbeat") sub.markReady();
      if (sub.prefixes.some((p) => name.startsWith(p))) sub.onEvent(name, structuredClone(frame));
    }
    return frame;
  }

  /** Commit `n` messages and publish them in one agent.message event. */
  say(sessionId, n = 1, options = {}) {
    const { projectId } = this.sessions.get(sessionId).session;
    const messages = this.commit(sessionId, n);
    return this.publish("agent.message", { sessionId, messages }, { projectId, ...options });
  }

  status(sessionId, status, options = {}) {
    const entry = this.sessions.get(sessionId);
    entry.session.status = status;
    const { projectId } = entry.session;
    return this.publish("agent.status", { sessionId, status }, { projectId, ...options });
  }

  heartbeat(options = {}) {
    const lastSeqIds = {};
    for (const [sid, entry] of this.sessions) {
      if (entry.session.status === "running") lastSeqIds[sid] = entry.session.lastSeqId;
    }
    return this.publish(
      "daemon.heartbeat",
      { live: Object.keys(lastSeqIds).length, lastSeqIds },
      options,
    );
  }

  restart() {
    this.boot = `boot-${Number(this.boot.split("-")[1]) + 1}`;
    this.eseq = 0;
  }

  // -- the transport interface the follower uses --------------------------------

  async call(method, params) {
    this.calls.push({ method, params });
    await tick();
    if (this.beforeCall) await this.beforeCall(method, params);
    if (this.failCalls > 0) {
      this.failCalls -= 1;
      throw new Error("daemon unreachable");
    }
    switch (method) {
      case "session.get": {
        const sid = this.current.get(params.projectId);
        return { session: sid ? structuredClone(this.sessions.get(sid).session) : null };
      }
      case "session.list": {
        const all = [...this.sessions.values()].map((e) => structuredClone(e.session));
        return {
          sessions: all.filter((s) => !params.projectId || s.projectId === params.projectId),
        };
      }
      case "session.messages.load": {
        const entry = this.sessions.get(params.sessionId);
        if (!entry)
          throw errorFromJson({ code: -32005, message: "unknown", data: { reason: "not_found" } });
        const after = params.afterSeq ?? 0;
        const limit = params.limit ?? 500;
        const rest = entry.messages.filter((m) => m.seqId > after);
        return {
          messages: structuredClone(rest.slice(0, limit)),
          lastSeqId: entry.session.lastSeqId,
          hasMore: rest.length > limit,
        };
      }
      default:
        throw new Error(`fake daemon: no ${method}`);
    }
  }

  subscribe(prefixes, onEvent) {
    let markReady;
    const ready = new Promise((resolve) => {
      markReady = resolve;
    });
    const sub = { prefixes, onEvent, markReady, ready, closed: false };
    sub.close = async () => {
      sub.closed = true;
    };
    this.subscribers.push(sub);
    return sub;
  }
}

/** Start `follower` while the fake daemon sends heartbeats; resolves when started. */
async function started(daemon, follower) {
  const starting = follower.start();
  await tick();
  daemon.heartbeat();
  return starting;
}

const seqIds = (messages) => messages.map((m) => m.seqId);
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

function recorder() {
  const seen = [];
  const resyncs = [];
  return {
    seen,
    resyncs,
    options: {
      onMessage: (message, sessionId) => seen.push([sessionId, message.seqId]),
      onResync: (info) => resyncs.push(info.reason),
    },
  };
}

describe("Follower", () => {
  it("a late follower gets the whole stored session from the snapshot", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    daemon.commit("s1", 7);
    daemon.sessions.get("s1").session.status = "done";
    const rec = recorder();
    const follower = await started(
      daemon,
      new Follower(daemon, { projectId: "p", sessionId: "s1" }, rec.options),
    );
    const outcome = await follower.untilDone("s1", { timeout: 1000 });
    assert.deepEqual(outcome, { sessionId: "s1", status: "done" });
    assert.deepEqual(seqIds(follower.messages), range(1, 7));
    assert.deepEqual(
      rec.seen,
      range(1, 7).map((n) => ["s1", n]),
    );
    assert.deepEqual([follower.stats.loaded, follower.stats.live], [7, 0]);
    await follower.close();
  });

  it("nothing falls between subscribing and the snapshot; repeats are dropped", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    daemon.commit("s1", 2);
    let once = true;
    daemon.beforeCall = async (method) => {
      // While the snapshot is in flight, messages 3 and 4 are committed and
      // published: the snapshot may or may not include them.
      if (method === "session.messages.load" && once) {
        once = false;
        daemon.say("s1", 2);
      }
    };
    const rec = recorder();
    const follower = await started(daemon, new Follower(daemon, { sessionId: "s1" }, rec.options));
    daemon.say("s1", 1);
    daemon.say("s1", 2);
    await follower.flush();
    assert.deepEqual(seqIds(follower.messages), range(1, 7));
    assert.equal(new Set(rec.seen.map(([, n]) => n)).size, rec.seen.length, "each seqId once");
    assert.ok(follower.stats.duplicates >= 2, "the event of 3-4 repeats the snapshot");
    assert.equal(follower.projectId, "p", "learned from the events");
    await follower.close();
  });

  it("a seqId gap is filled from storage, in order", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const rec = recorder();
    const follower = await started(
      daemon,
      new Follower(daemon, "p", { ...rec.options, everything: false }),
    );
    daemon.say("s1", 2);
    daemon.say("s1", 3, { lost: true });
    daemon.say("s1", 1);
    await follower.flush();
    assert.deepEqual(seqIds(follower.messages), range(1, 6));
    assert.deepEqual(
      rec.seen.map(([, n]) => n),
      range(1, 6),
    );
    assert.ok(rec.resyncs.includes("seqId"));
    assert.equal(follower.stats.seqGaps, 1);
    assert.deepEqual([follower.stats.live, follower.stats.loaded], [2, 4]);
    await follower.close();
  });

  it("a message cut in its event is loaded whole from storage", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const rec = recorder();
    const follower = await started(daemon, new Follower(daemon, { sessionId: "s1" }, rec.options));
    const [whole] = daemon.commit("s1", 1);
    whole.content = "x".repeat(40000);
    const cut = { ...whole, content: "x".repeat(16384), truncated: true, contentBytes: 40000 };
    daemon.publish("agent.message", { sessionId: "s1", messages: [cut] }, { projectId: "p" });
    daemon.say("s1", 1);
    await follower.flush();
    assert.deepEqual(seqIds(follower.messages), [1, 2]);
    assert.equal(follower.messages[0].content.length, 40000);
    assert.equal(follower.messages[0].truncated, undefined);
    assert.ok(rec.resyncs.includes("truncated"));
    await follower.close();
  });

  it("an eseq jump reloads even when no seqId shows the loss", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const rec = recorder();
    const follower = await started(daemon, new Follower(daemon, { sessionId: "s1" }, rec.options));
    daemon.say("s1", 2);
    daemon.say("s1", 2, { lost: true });
    daemon.publish("settings.changed", { key: "k", value: "v" });
    await follower.flush();
    assert.deepEqual(rec.resyncs, ["snapshot", "eseq"]);
    assert.deepEqual(seqIds(follower.messages), range(1, 4));
    assert.equal(follower.stats.eseqGaps, 1);
    await follower.close();
  });

  it("a heartbeat ahead of the last seqId reloads the lost tail", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const rec = recorder();
    const follower = await started(
      daemon,
      new Follower(daemon, "p", { ...rec.options, everything: false }),
    );
    daemon.say("s1", 3);
    daemon.say("s1", 2, { lost: true });
    await follower.flush();
    assert.deepEqual(seqIds(follower.messages), range(1, 3));
    daemon.heartbeat();
    await follower.flush();
    assert.deepEqual(rec.resyncs, ["snapshot", "heartbeat"]);
    assert.deepEqual(seqIds(follower.messages), range(1, 5));
    await follower.close();
  });

  it("a new boot reloads, and takes the status from storage", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const rec = recorder();
    const follower = await started(daemon, new Follower(daemon, "p", rec.options));
    daemon.say("s1", 2);
    await follower.flush();
    // The daemon dies; its successor marks the session interrupted, then we reconnect.
    daemon.commit("s1", 1);
    daemon.sessions.get("s1").session.status = "error";
    daemon.restart();
    daemon.heartbeat();
    const outcome = await follower.untilDone(undefined, { timeout: 1000 });
    assert.deepEqual(outcome, { sessionId: "s1", status: "error" });
    assert.deepEqual(rec.resyncs, ["snapshot", "boot"]);
    assert.deepEqual(seqIds(follower.messages), range(1, 3));
    await follower.close();
  });

  it("the end of a session settles only after its last messages", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const follower = await started(daemon, new Follower(daemon, "p", { everything: false }));
    const done = follower.untilDone();
    daemon.say("s1", 3);
    daemon.say("s1", 2, { lost: true }); // the tail is lost, and no heartbeat comes
    daemon.status("s1", "done");
    const outcome = await done;
    assert.equal(outcome.status, "done");
    assert.deepEqual(seqIds(follower.messages), range(1, 5));
    await follower.close();
  });

  it("pages through a long snapshot", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1", "done");
    daemon.commit("s1", 12);
    const follower = await started(
      daemon,
      new Follower(daemon, { sessionId: "s1" }, { pageSize: 5 }),
    );
    assert.deepEqual(seqIds(follower.messages), range(1, 12));
    const loads = daemon.calls.filter((c) => c.method === "session.messages.load");
    assert.deepEqual(
      loads.slice(0, 3).map((c) => c.params.afterSeq),
      [0, 5, 10],
    );
    await follower.close();
  });

  it("a project follower moves to the project's next session", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1", "done");
    daemon.commit("s1", 3);
    const sessions = [];
    const rec = recorder();
    const follower = await started(
      daemon,
      new Follower(daemon, "p", {
        ...rec.options,
        onSession: (sid, prev) => sessions.push([sid, prev]),
      }),
    );
    assert.deepEqual(await follower.untilDone(), { sessionId: "s1", status: "done" });
    daemon.addSession("p", "s2");
    daemon.addSession("other", "x1");
    daemon.say("x1", 2);
    daemon.say("s2", 1);
    daemon.say("s2", 1);
    const next = follower.untilDone("s2");
    daemon.status("s2", "done");
    assert.deepEqual(await next, { sessionId: "s2", status: "done" });
    assert.deepEqual(sessions, [
      ["s1", null],
      ["s2", "s1"],
    ]);
    assert.equal(follower.sessionId, "s2");
    assert.deepEqual(seqIds(follower.messages), [1, 2]);
    assert.deepEqual(rec.seen, [
      ["s1", 1],
      ["s1", 2],
      ["s1", 3],
      ["s2", 1],
      ["s2", 2],
    ]);
    await follower.close();
  });

  it("a failed reload is reported and retried at the next heartbeat", async () => {
    const daemon = new FakeDaemon();
    daemon.addSession("p", "s1");
    const errors = [];
    const follower = await started(
      daemon,
      new Follower(daemon, "p", { onError: (e) => errors.push(e) }),
    );
    daemon.say("s1", 1);
    daemon.failCalls = 1;
    daemon.say("s1", 2, { lost: true });
    daemon.say("s1", 1);
    await follower.flush();
    assert.equal(errors.length, 1);
    assert.deepEqual(seqIds(follower.messages), [1]);
    // Not running any more, so the heartbeat does not list it: only the retry helps.
    daemon.sessions.get("s1").session.status = "done";
    daemon.heartbeat();
    await follower.flush();
    assert.deepEqual(seqIds(follower.messages), range(1, 4));
    await follower.close();
  });

  it("an unknown session fails start(); close() rejects waiters", async () => {
    const daemon = new FakeDaemon();
    await assert.rejects(started(daemon, new Follower(daemon, { sessionId: "nope" })), NotFound);
    daemon.addSession("p", "s1");
    const follower = await started(daemon, new Follower(daemon, "p"));
    const waiting = follower.untilDone();
    await follower.close();
    await assert.rejects(waiting, { name: "ClosedError" });
  });

  it("no heartbeat: start() times out", async () => {
    const daemon = new FakeDaemon();
    await assert.rejects(new Follower(daemon, "p", { readyTimeout: 50 }).start(), {
      name: "CorralTimeoutError",
    });
  });
});

describe("errors and endpoints", () => {
  it("errorFromJson picks the class by reason and keeps code, reason and data", () => {
    const error = errorFromJson(
      {
        code: -32602,
        message: "bad",
        data: { reason: "invalid_params", field: "providerConfig.turns" },
      },
      "agent.start",
    );
    assert.ok(error instanceof InvalidParams && error instanceof RpcError);
    assert.equal(error.code, -32602);
    assert.equal(error.reason, "invalid_params");
    assert.equal(error.field, "providerConfig.turns");
    assert.equal(error.method, "agent.start");
    const unknown = errorFromJson({
      code: -32099,
      message: "new",
      data: { reason: "brand_new", x: 1 },
    });
    assert.equal(unknown.constructor, RpcError);
    assert.deepEqual([unknown.code, unknown.reason, unknown.data.x], [-32099, "brand_new", 1]);
  });

  it("endpoints: the discovery file comes after the environment", () => {
    const base = mkdtempSync(join(tmpdir(), "corral-node-"));
    try {
      mkdirSync(join(base, "corral"));
      writeFileSync(
        join(base, "corral", "endpoints.json"),
        JSON.stringify({ rpc: "ipc:///d/rpc", events: "ipc:///d/ev", pid: 1, boot: "b" }),
      );
      const env = { XDG_RUNTIME_DIR: base };
      assert.deepEqual(resolveEndpoints({}, env), { rpc: "ipc:///d/rpc", events: "ipc:///d/ev" });
      assert.deepEqual(resolveEndpoints({}, { ...env, CORRAL_EVENTS: "ipc:///e" }), {
        rpc: "ipc:///d/rpc",
        events: "ipc:///e",
      });
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it("endpoints: explicit, then env, then defaults of the runtime dir", () => {
    const env = { XDG_RUNTIME_DIR: "/nonexistent-run" };
    assert.equal(runtimeDir(env), "/nonexistent-run/corral");
    assert.deepEqual(resolveEndpoints({}, env), {
      rpc: "ipc:///nonexistent-run/corral/rpc.sock",
      events: "ipc:///nonexistent-run/corral/events.sock",
    });
    assert.deepEqual(
      resolveEndpoints(
        { rpc: "ipc:///a" },
        { ...env, CORRAL_RPC: "ipc:///b", CORRAL_EVENTS: "ipc:///c" },
      ),
      {
        rpc: "ipc:///a",
        events: "ipc:///c",
      },
    );
    assert.match(runtimeDir({ XDG_RUNTIME_DIR: "relative" }), /^\/tmp\/corral-\d+$/);
  });
});
