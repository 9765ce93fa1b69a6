/**
 * CURVE for a `tcp://` daemon: the socket options a client sets, from its options,
 * the environment and the discovery file.
 *
 * A daemon serving tcp is a CurveZMQ server that answers only clients whose public
 * key it lists. A client needs:
 * - the daemon's public key (Z85, 40 characters): `curveServerKey`, else
 *   `CORRAL_CURVE_SERVER_KEY`, else `curveServerKey` of `endpoints.json`;
 * - a key pair of its own: `curveKeyFile` (a `.key_secret` certificate written by
 *   `corral keys generate`, pyzmq's format), else `CORRAL_CURVE_KEY_FILE`.
 * ipc endpoints never use CURVE.
 */

import { readFileSync } from "node:fs";

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** A CURVE option that cannot be used. */
export class CurveError extends Error {
  constructor(message) {
    super(message);
    this.name = "CurveError";
  }
}

/**
 * `{publicKey, secretKey}` (Z85 strings) of a certificate file.
 * @param {string} path
 * @returns {{publicKey: string, secretKey: string | null}}
 */
export function readKeyFile(path) {
  let text;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new CurveError(`cannot read the CURVE key file ${path}: ${error.message}`);
  }
  const pick = (name) => {
    const found = text.match(new RegExp(`^\\s*${name}\\s*=\\s*"([^"]*)"`, "m"));
    return found ? found[1] : null;
  };
  const publicKey = pick("public-key");
  const secretKey = pick("secret-key");
  if (!publicKey || !Z85_KEY.test(publicKey)) {
    throw new CurveError(`${path} holds no CURVE public key`);
  }
  if (secretKey !== null && !Z85_KEY.test(secretKey)) {
    throw new CurveError(`${path}: the secret key is not a Z85 key`);
  }
  return { publicKey, secretKey };
}

/**
 * The socket options of a CURVE client of `url`, or `{}` (not tcp, or no key file).
 * @param {string} url
 * @param {{curveServerKey?: string, curveKeyFile?: string}} options
 * @param {Record<string, string | undefined>} env
 * @param {{curveServerKey?: string | null} | null} discovery
 * @returns {{curveServerKey?: string, curvePublicKey?: string, curveSecretKey?: string}}
 */
export function curveSocketOptions(url, options, env, discovery) {
  if (!url.startsWith("tcp://")) return {};
  const keyFile = options.curveKeyFile || env.CORRAL_CURVE_KEY_FILE || undefined;
  let serverKey = options.curveServerKey || env.CORRAL_CURVE_SERVER_KEY || undefined;
  if (!keyFile) {
    if (serverKey) {
      throw new CurveError(
        "a CURVE server key was given without a client key file (curveKeyFile or CORRAL_CURVE_KEY_FILE)",
      );
    }
    return {};
  }
  serverKey ??= discovery?.curveServerKey || undefined;
  if (!serverKey) {
    throw new CurveError(
      "no CURVE server key: pass curveServerKey (or set CORRAL_CURVE_SERVER_KEY); endpoints.json has none",
    );
  }
  if (!Z85_KEY.test(serverKey)) throw new CurveError("the CURVE server key is not a Z85 key");
  const { publicKey, secretKey } = readKeyFile(keyFile);
  if (!secretKey) {
    throw new CurveError(`${keyFile} holds no secret key: give the client's .key_secret file`);
  }
  return { curveServerKey: serverKey, curvePublicKey: publicKey, curveSecretKey: secretKey };
}
