#!/usr/bin/env node
/*
 * verify.js: check recorded webhook deliveries with the reference Standard
 * Webhooks verifier, the npm package "standardwebhooks", for the
 * konvox_webhooks tests.  test/npm-deps installs it into test/node_modules,
 * where require() finds it from this directory.
 *
 *   node test/verify.js [--text] [FILE]
 *
 * Reads one JSON document from FILE, or from stdin when FILE is absent or
 * "-":
 *
 *   {"cases": [
 *     {"name": "normal delivery",            (optional, echoed back)
 *      "request": {"headers": {"webhook-id": ..., ...},
 *                  "body_b64": "<base64 of the raw body bytes>"},
 *      "secrets": ["whsec_...", ...],
 *      "payload": "buffer"}                  (optional, see below)
 *   ]}
 *
 * A single case may also be given on its own, without "cases".  "request"
 * takes a line of test/receiver.py's log as it is: the headers it wants are
 * webhook-id, webhook-timestamp and webhook-signature (in any case); others
 * are ignored.
 *
 * Each case is verified once per secret, with
 * new Webhook(secret).verify(payload, headers), and the verdicts go to
 * stdout as one JSON document, in the order given:
 *
 *   {"verifier": "standardwebhooks 1.1.1",
 *    "cases": [{"name": ..., "results": [{"ok": true},
 *                                        {"ok": false,
 *                                         "error": "No matching signature found"}]}]}
 *
 * With --text, one line per secret instead: "<name> secret <n>: ok" or
 * "<name> secret <n>: rejected: <error>".
 *
 * "payload" says what is handed to verify():
 *   buffer        (default) a Buffer of the raw body bytes: what a receiver
 *                 must do
 *   latin1        the bytes read as a latin1 string, a common mistake: wrong
 *                 as soon as the body holds non-ASCII text
 *   reserialized  JSON.stringify(JSON.parse(body)), another common mistake:
 *                 wrong whenever the sender's spacing, escapes or numbers
 *                 differ from JavaScript's
 * The last two exist so that the tests can show that the raw bytes matter.
 *
 * The verifier also checks that webhook-timestamp is within 5 minutes of
 * now, so recorded requests must be fresh.
 *
 * Exit status: 0 when every case was verified, whatever the verdicts;
 * 2 when the input is unusable or the library is missing.  Secrets are not
 * echoed.
 */

"use strict";

const fs = require("node:fs");
const path = require("node:path");

/* Print a message to stderr and exit with status 2. */
function fail(message) {
  process.stderr.write(`verify.js: ${message}\n`);
  process.exit(2);
}

/* The standardwebhooks module and its version, or exit with a hint. */
function loadVerifier() {
  let lib;
  let version = "unknown";
  try {
    lib = require("standardwebhooks");
  } catch (err) {
    fail(
      `cannot load standardwebhooks (${err.message}); ` +
        `run test/npm-deps, or make test, to install it into ${path.join(__dirname, "node_modules")}`,
    );
  }
  try {
    const pkg = require.resolve("standardwebhooks/package.json");
    version = JSON.parse(fs.readFileSync(pkg, "utf8")).version;
  } catch (err) {
    /* the version is for the record only */
  }
  if (typeof lib.Webhook !== "function") {
    fail("standardwebhooks does not export Webhook");
  }
  return { Webhook: lib.Webhook, version };
}

/* Read FILE, or stdin for "-", as UTF-8 JSON. */
function readInput(file) {
  let text;
  try {
    text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    fail(`cannot read ${file === "-" ? "stdin" : file}: ${err.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    fail(`input is not JSON: ${err.message}`);
  }
  return undefined;
}

/* Check one case's shape; returns its payload mode. */
function checkCase(c, i) {
  const where = `case ${i + 1}${c && c.name ? ` (${c.name})` : ""}`;
  if (c === null || typeof c !== "object") {
    fail(`${where} is not an object`);
  }
  const req = c.request;
  if (req === null || typeof req !== "object") {
    fail(`${where}: "request" must be an object`);
  }
  if (req.headers === null || typeof req.headers !== "object") {
    fail(`${where}: "request.headers" must be an object`);
  }
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value !== "string") {
      fail(`${where}: header ${name} must be a string`);
    }
  }
  if (typeof req.body_b64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(req.body_b64)) {
    fail(`${where}: "request.body_b64" must be a base64 string`);
  }
  if (!Array.isArray(c.secrets) || c.secrets.length === 0 || !c.secrets.every((s) => typeof s === "string")) {
    fail(`${where}: "secrets" must be a non-empty array of strings`);
  }
  const mode = c.payload === undefined ? "buffer" : c.payload;
  if (!["buffer", "latin1", "reserialized"].includes(mode)) {
    fail(`${where}: unknown payload "${mode}"; use buffer, latin1 or reserialized`);
  }
  return mode;
}

/*
 * What verify() is handed for a body, by payload mode.  Returns
 * {payload} or {error} when the mode cannot be applied (a body that is not
 * JSON cannot be re-serialized).
 */
function makePayload(body, mode) {
  switch (mode) {
    case "latin1":
      return { payload: body.toString("latin1") };
    case "reserialized":
      try {
        return { payload: JSON.stringify(JSON.parse(body.toString("utf8"))) };
      } catch (err) {
        return { error: `cannot re-serialize the body: ${err.message}` };
      }
    default:
      return { payload: body };
  }
}

/* Verify one case with each of its secrets; returns the list of verdicts. */
function verifyCase(Webhook, c, mode) {
  const body = Buffer.from(c.request.body_b64, "base64");
  const made = makePayload(body, mode);
  return c.secrets.map((secret) => {
    if (made.error !== undefined) {
      return { ok: false, error: made.error };
    }
    try {
      /* a fresh copy of the headers: verify() must not see another run's */
      new Webhook(secret).verify(made.payload, { ...c.request.headers });
      return { ok: true };
    } catch (err) {
      return { ok: false, error: err && err.message ? err.message : String(err) };
    }
  });
}

function main(argv) {
  let text = false;
  const files = [];
  for (const arg of argv) {
    if (arg === "--text") {
      text = true;
    } else if (arg === "--help" || arg === "-h") {
      process.stdout.write("usage: node verify.js [--text] [FILE]\n");
      return 0;
    } else if (arg.startsWith("--")) {
      fail(`unknown option ${arg}`);
    } else {
      files.push(arg);
    }
  }
  if (files.length > 1) {
    fail("give at most one input file");
  }

  const { Webhook, version } = loadVerifier();
  const input = readInput(files.length ? files[0] : "-");
  if (input === null || typeof input !== "object") {
    fail("input must be a JSON object");
  }
  const cases = Array.isArray(input.cases) ? input.cases : input.request ? [input] : null;
  if (cases === null) {
    fail('input must hold "cases" or be a single case with "request"');
  }

  const modes = cases.map(checkCase);
  const out = cases.map((c, i) => ({
    name: c.name === undefined ? `case ${i + 1}` : c.name,
    results: verifyCase(Webhook, c, modes[i]),
  }));

  if (text) {
    for (const c of out) {
      c.results.forEach((r, i) => {
        process.stdout.write(`${c.name} secret ${i + 1}: ${r.ok ? "ok" : `rejected: ${r.error}`}\n`);
      });
    }
  } else {
    process.stdout.write(`${JSON.stringify({ verifier: `standardwebhooks ${version}`, cases: out })}\n`);
  }
  return 0;
}

process.exitCode = main(process.argv.slice(2));
