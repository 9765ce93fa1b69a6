/**
 * Typed errors of the corral contract.
 *
 * Every error answer of the daemon becomes an {@link RpcError} (or one of its
 * subclasses, chosen by `data.reason`), carrying `code`, `reason`, `data` and the
 * `method` that failed. Rely on `reason` (stable); `message` is for people.
 * Transport failures are {@link CorralTimeoutError} and {@link ClosedError}.
 */

/** Base class of everything this package throws on purpose. */
export class CorralError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The daemon answered with a JSON-RPC error. */
export class RpcError extends CorralError {
  /**
   * @param {string} message human text from the daemon
   * @param {{code?: number, reason?: string, data?: Record<string, unknown>, method?: string}} [info]
   */
  constructor(message, { code, reason, data, method } = {}) {
    super(message);
    /** @type {number} */
    this.code = code ?? new.target.code ?? -32603;
    /** @type {string} */
    this.reason = reason ?? data?.reason ?? new.target.reason ?? "unknown";
    /** @type {Record<string, unknown>} */
    this.data = { ...(data ?? {}), reason: this.reason };
    /** @type {string | undefined} */
    this.method = method;
  }
}

function define(name, code, reason, parent = RpcError) {
  const cls = {
    [name]: class extends parent {},
  }[name];
  cls.code = code;
  cls.reason = reason;
  return cls;
}

export const ParseError = define("ParseError", -32700, "parse_error");
export const InvalidRequest = define("InvalidRequest", -32600, "invalid_request");
export const TooLarge = define("TooLarge", -32600, "too_large", InvalidRequest);
export const MethodNotFound = define("MethodNotFound", -32601, "method_not_found");
export const InvalidParams = define("InvalidParams", -32602, "invalid_params");
export const InternalError = define("InternalError", -32603, "internal_error");
export const NoSession = define("NoSession", -32001, "no_session");
export const SessionRunning = define("SessionRunning", -32002, "session_running");
export const StartInProgress = define("StartInProgress", -32003, "start_in_progress");
export const ProviderUnavailable = define("ProviderUnavailable", -32004, "provider_unavailable");
export const NotFound = define("NotFound", -32005, "not_found");
export const Overloaded = define("Overloaded", -32006, "overloaded");
export const ShuttingDown = define("ShuttingDown", -32007, "shutting_down");

/** `invalid_params` names the first bad field in `data.field`. */
Object.defineProperty(InvalidParams.prototype, "field", {
  get() {
    return this.data.field;
  },
});

export const ERROR_CLASSES = [
  ParseError,
  InvalidRequest,
  TooLarge,
  MethodNotFound,
  InvalidParams,
  InternalError,
  NoSession,
  SessionRunning,
  StartInProgress,
  ProviderUnavailable,
  NotFound,
  Overloaded,
  ShuttingDown,
];

const BY_REASON = new Map(ERROR_CLASSES.map((cls) => [cls.reason, cls]));
const BY_CODE = new Map();
for (const cls of ERROR_CLASSES) {
  if (!BY_CODE.has(cls.code)) BY_CODE.set(cls.code, cls);
}

/**
 * The typed error for a response's `error` member.
 * @param {unknown} error the `error` member of a JSON-RPC response
 * @param {string} [method] the method that was called
 * @returns {RpcError}
 */
export function errorFromJson(error, method) {
  const obj = error && typeof error === "object" ? error : {};
  const data = obj.data && typeof obj.data === "object" ? obj.data : {};
  const code = typeof obj.code === "number" ? obj.code : undefined;
  const reason = typeof data.reason === "string" ? data.reason : undefined;
  const cls =
    (reason && BY_REASON.get(reason)) || (code !== undefined && BY_CODE.get(code)) || RpcError;
  const message = typeof obj.message === "string" ? obj.message : (cls.reason ?? "error");
  return new cls(message, { code, reason, data, method });
}

/** No answer (or no chance to send) within the call's timeout. */
export class CorralTimeoutError extends CorralError {
  constructor(message, { method, timeout } = {}) {
    super(message);
    this.code = "ETIMEDOUT";
    this.method = method;
    this.timeout = timeout;
  }
}

/** The client or subscription was closed while the operation was pending. */
export class ClosedError extends CorralError {
  constructor(message = "closed") {
    super(message);
    this.code = "ECLOSED";
  }
}

/** The daemon broke the contract (e.g. an answer that is not JSON-RPC). */
export class ProtocolError extends CorralError {}
