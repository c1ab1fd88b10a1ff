'use strict';
/*
 * The receiver of make bench's noisy-neighbour and realistic-receiver cases
 * (issue 11.7): one HTTP server on 127.0.0.1, an ephemeral port, that holds
 * as many connections as it is given, and answers by path:
 *
 *   /hang/...        never: reads the request and keeps the connection open,
 *                    as a receiver that accepts and then stalls
 *   /delay/MS/...    200, MS milliseconds after the request has been read
 *   anything else    200 at once
 *
 * Keep-alive stays on for 65 s, as bench/nginx.conf's.  Writes the port to
 * --port-file once it listens.  On SIGUSR2, and on SIGTERM before it stops,
 * writes to --stats-file one line of counts since the last SIGUSR2:
 *
 *   <requests answered> <requests left hanging> <most connections open at once>
 *
 * Standard library only (Node.js 20).
 *
 *   node slow_receiver.js --port-file FILE --pid-file FILE --stats-file FILE
 */

const fs = require('node:fs');
const http = require('node:http');

const args = {};
for (let i = 2; i + 1 < process.argv.length; i += 2)
  args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];

let open = 0;
let mostOpen = 0;
let answered = 0;
let hanging = 0;

/* write a file whole, so that a reader never sees half of it */
function writeAtomically(file, text) {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

function answer(res) {
  answered++;
  res.writeHead(200, { 'content-length': 0 });
  res.end();
}

const server = http.createServer({
  keepAliveTimeout: 65000,
  headersTimeout: 0,
  requestTimeout: 0,
}, (req, res) => {
  req.resume();
  req.on('end', () => {
    const m = /^\/(hang|delay\/(\d+))(\/|$)/.exec(req.url);
    if (m === null)
      answer(res);
    else if (m[1] === 'hang')
      hanging++;
    else
      setTimeout(answer, Number(m[2]), res);
  });
});
server.keepAliveTimeout = 65000;

server.on('connection', (socket) => {
  open++;
  if (open > mostOpen)
    mostOpen = open;
  socket.on('close', () => open--);
});

function writeStats() {
  writeAtomically(args['stats-file'], `${answered} ${hanging} ${mostOpen}\n`);
  answered = 0;
  hanging = 0;
  mostOpen = open;
}

process.on('SIGUSR2', writeStats);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    writeStats();
    process.exit(0);
  });
}

server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  writeAtomically(args['pid-file'], `${process.pid}\n`);
  writeAtomically(args['port-file'], `${server.address().port}\n`);
});
