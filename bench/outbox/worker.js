'use strict';
/*
 * make bench: the outbox worker that an application team would write instead
 * of konvox_webhooks (issue 15.3), the baseline of the steady-state drains.
 *
 * The application writes one row per delivery into bench.outbox (the event,
 * its payload and the endpoint) in its own transaction.  Each process of
 * this worker runs --loops loops; a loop, over and over:
 *
 *   BEGIN
 *   claim up to --batch due rows, oldest first, FOR UPDATE SKIP LOCKED, with
 *     their endpoint's URL and secret
 *   POST them all at once over a pool of keep-alive connections (undici,
 *     --connections per process), each signed as Standard Webhooks signs
 *     (HMAC-SHA256 of "id.timestamp.body" with the endpoint's secret)
 *   one UPDATE for the whole batch: delivered, or the next attempt
 *   COMMIT
 *
 * The transaction stays open while the batch is sent: that is what holds
 * the row locks that keep the other loops off those rows, and the pattern
 * FOR UPDATE SKIP LOCKED is used for.  A loop that finds nothing due waits
 * --idle-ms and looks again.  Commits are asynchronous (synchronous_commit
 * off), the trade konvox_webhooks makes for its own records: a batch whose
 * commit is lost in a crash is sent again, so delivery stays at least once.
 *
 * Not part of the extension; see bench/RESULTS.md.
 *
 *   node worker.js [--batch N] [--connections N] [--loops N] [--idle-ms N]
 *                  [--timeout-ms N] [--ready-file FILE]
 *
 * Connects with the PG* environment variables.  Writes FILE once every loop
 * is connected; stops on SIGTERM or SIGINT.
 */

const crypto = require('node:crypto');
const fs = require('node:fs');
const { Client } = require('pg');
const { Agent } = require('undici');

const options = {
  batch: 500,
  connections: 64,
  loops: 1,
  'idle-ms': 10,
  'timeout-ms': 10000,
  'ready-file': null,
};
for (let i = 2; i < process.argv.length; i += 2) {
  const name = process.argv[i].replace(/^--/, '');
  if (!(name in options) || i + 1 >= process.argv.length) {
    console.error(`outbox worker: unknown option ${process.argv[i]}`);
    process.exit(2);
  }
  options[name] = name === 'ready-file' ?
    process.argv[i + 1] : Number(process.argv[i + 1]);
}

const CLAIM = {
  name: 'claim',
  text: `SELECT o.id, o.event, o.company_id, o.payload::text AS payload,
                o.created_at, e.url, e.secret
           FROM bench.outbox o
           JOIN bench.outbox_endpoints e ON e.id = o.endpoint_id
          WHERE o.status = 'pending' AND o.next_attempt_at <= now()
          ORDER BY o.next_attempt_at, o.id
          LIMIT $1
            FOR UPDATE OF o SKIP LOCKED`,
};

/* delivered on a 2xx; otherwise retried 30 s, 60 s later, failed after 3 */
const RECORD = {
  name: 'record',
  text: `UPDATE bench.outbox o
            SET attempts = o.attempts + 1,
                last_status_code = nullif(r.code, 0),
                status = CASE WHEN r.code BETWEEN 200 AND 299 THEN 'delivered'
                              WHEN o.attempts + 1 >= 3 THEN 'failed'
                              ELSE 'pending' END,
                next_attempt_at = CASE
                    WHEN r.code BETWEEN 200 AND 299 OR o.attempts + 1 >= 3
                    THEN NULL
                    ELSE now() + interval '30 seconds' * 2 ^ o.attempts END,
                delivered_at = CASE WHEN r.code BETWEEN 200 AND 299
                                    THEN now() END
           FROM unnest($1::bigint[], $2::int[]) AS r(id, code)
          WHERE o.id = r.id`,
};

const agent = new Agent({
  connections: options.connections,
  pipelining: 1,
  keepAliveTimeout: 60000,
  keepAliveMaxTimeout: 600000,
  headersTimeout: options['timeout-ms'],
  bodyTimeout: options['timeout-ms'],
  connect: { timeout: options['timeout-ms'] },
});

/* an endpoint's URL split once, and its signing key decoded once */
const targets = new Map();
const keys = new Map();

function target(url) {
  let t = targets.get(url);
  if (!t) {
    const u = new URL(url);
    t = { origin: u.origin, path: u.pathname + u.search };
    targets.set(url, t);
  }
  return t;
}

function key(secret) {
  let k = keys.get(secret);
  if (!k) {
    k = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
    keys.set(secret, k);
  }
  return k;
}

/* POST one row; resolves to the status code, 0 when no answer came */
async function send(row, now) {
  const id = `msg_${row.id}`;
  const body = `{"event": ${JSON.stringify(row.event)}, ` +
    `"timestamp": "${row.created_at.toISOString()}", ` +
    `"companyId": ${JSON.stringify(row.company_id)}, ` +
    `"data": ${row.payload}}`;
  const signature = crypto.createHmac('sha256', key(row.secret))
    .update(`${id}.${now}.`).update(body).digest('base64');
  const t = target(row.url);
  try {
    const res = await agent.request({
      origin: t.origin,
      path: t.path,
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'outbox-worker/1.0',
        'webhook-id': id,
        'webhook-timestamp': String(now),
        'webhook-signature': `v1,${signature}`,
      },
      body,
    });
    await res.body.dump();
    return res.statusCode;
  } catch (e) {
    return 0;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* one loop: claim, send, record, commit, until the process stops */
async function loop(client) {
  for (;;) {
    await client.query('BEGIN');
    const { rows } = await client.query({ ...CLAIM, values: [options.batch] });
    if (rows.length === 0) {
      await client.query('COMMIT');
      await sleep(options['idle-ms']);
      continue;
    }
    const now = Math.floor(Date.now() / 1000);
    const codes = await Promise.all(rows.map((row) => send(row, now)));
    await client.query({ ...RECORD, values: [rows.map((r) => r.id), codes] });
    await client.query('COMMIT');
  }
}

async function main() {
  const clients = [];
  for (let i = 0; i < options.loops; i++) {
    const client = new Client({ application_name: 'bench outbox worker' });
    await client.connect();
    await client.query('SET synchronous_commit = off');
    clients.push(client);
  }
  if (options['ready-file'])
    fs.writeFileSync(options['ready-file'], `${process.pid}\n`);
  await Promise.all(clients.map(loop));
}

for (const signal of ['SIGTERM', 'SIGINT'])
  process.on(signal, () => process.exit(0));

main().catch((e) => {
  console.error(`outbox worker: ${e.message}`);
  process.exit(1);
});
