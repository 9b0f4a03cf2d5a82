// Load generator for bench/cpu_per_ping.py, scale.py and herd.py: N WebSocket
// clients in one Node process, on the `ws` library, which answers every Ping
// with a Pong by itself.
//
//   node bench/load.mjs --url ws://127.0.0.1:9000/ --connections 4000
//
// Options (all optional but --url):
//   --local-address IP  connect from this source address (127.0.0.2, ...):
//                       each source address has its own ephemeral port range,
//                       so several processes can hold ~20,000 connections each;
//                       or several, comma-separated, taken in turn: bind() to
//                       an address slows down sharply as its ports fill, and a
//                       storm of 10,000 connects from one address spends
//                       seconds in it before the last request is sent
//   --concurrency N     handshakes in flight while connecting (default 256)
//   --bin-ms MS         also count Pings per MS-millisecond bin since the first
//                       connect ("bins"; for herd.py)
//   --gaps 1            also histogram, in 10 ms steps, the time from open to
//                       the first Ping ("first") and between Pings ("gaps") of
//                       each connection
//   --churn N           once every connection has opened, close N random ones
//                       a second (code 1000) and open as many new ones
//   --insecure 1        accept any server certificate (wss:// to a self-signed
//                       one made for the run)
//   --start-at MS       wait until this wall-clock time (ms since the epoch)
//                       before the first connect, so that several processes
//                       start a storm in the same instant (storm.py)
//   --open-ms 1         also histogram, in 10 ms steps, each connection's time
//                       from connect to open ("opening"; storm.py)
//
// It counts the Pings the clients receive.  Commands arrive as lines on stdin:
//   counts  print the counts as one JSON line
//   exit    drop every connection, print the counts, exit
// End of stdin and SIGTERM/SIGINT act like `exit`.  Every line it prints on
// stdout is one JSON object with a "type": "open" once every connection has
// opened (or failed), "counts" on request, "final" at exit.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

function parseArgs(argv) {
  const args = {
    url: 'ws://127.0.0.1:9000/',
    connections: 100,
    concurrency: 256,
    'local-address': '',
    'bin-ms': 0,
    gaps: 0,
    churn: 0,
    insecure: 0,
    'start-at': 0,
    'open-ms': 0,
  };
  const strings = new Set(['url', 'local-address']);
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args)) throw new Error(`unknown option ${argv[i]}`);
    args[name] = strings.has(name) ? argv[i + 1] : Number(argv[i + 1]);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const localAddresses = args['local-address'].split(',').filter(Boolean);
const sockets = [];
const counts = {
  connections: args.connections,
  open: 0, // open right now
  opened: 0, // ever opened
  failed: 0, // never opened
  closed: 0, // opened, then closed before we asked (a server timeout, say)
  pings: 0,
  pinged: 0, // connections that have received at least one Ping
  closeCodes: {}, // close code -> connections the server closed with it
  errors: {}, // error code -> how many (a refused or reset connect, say)
  churned: 0, // closed by us for --churn (and replaced)
};
// Pings per bin of --bin-ms since t0 (the first connect), and the 10 ms
// histograms of --gaps: {"10 ms steps": count}.
const bins = [];
const first = {};
const gaps = {};
const opening = {};
let t0 = null;
let lastOpen = null; // seconds (performance.now): the latest open
let exiting = false;

function emit(type) {
  const line = { type, t: performance.now() / 1000, ...counts };
  if (args['bin-ms']) Object.assign(line, { t0, epochMs: performance.timeOrigin + t0 * 1000, bins });
  if (args.gaps) Object.assign(line, { first, gaps });
  if (args['open-ms']) Object.assign(line, { opening, t0, lastOpen });
  process.stdout.write(JSON.stringify(line) + '\n');
}

function countIn(histogram, seconds) {
  const step = Math.round(seconds * 100);
  histogram[step] = (histogram[step] || 0) + 1;
}

connect.count = 0;

function connect() {
  return new Promise((resolve) => {
    // No permessage-deflate: control frames are never compressed, and the
    // zlib contexts it would add per connection would swamp the memory figures.
    const options = { perMessageDeflate: false };
    if (localAddresses.length) {
      options.localAddress = localAddresses[connect.count++ % localAddresses.length];
    }
    if (args.insecure) options.rejectUnauthorized = false;
    const started = performance.now() / 1000;
    const ws = new WebSocket(args.url, options);
    let pinged = false;
    let opened = false;
    let last = 0; // seconds: open, then the latest Ping
    ws.on('open', () => {
      opened = true;
      last = performance.now() / 1000;
      lastOpen = last;
      if (args['open-ms']) countIn(opening, last - started);
      counts.opened += 1;
      counts.open += 1;
      sockets.push(ws);
      resolve();
    });
    ws.on('ping', () => {
      counts.pings += 1;
      if (args['bin-ms'] || args.gaps) {
        const now = performance.now() / 1000;
        if (args['bin-ms']) {
          const bin = Math.floor(((now - t0) * 1000) / args['bin-ms']);
          while (bins.length <= bin) bins.push(0);
          bins[bin] += 1;
        }
        if (args.gaps) countIn(pinged ? gaps : first, now - last);
        last = now;
      }
      if (!pinged) {
        pinged = true;
        counts.pinged += 1;
      }
    });
    ws.on('error', (error) => {
      // 'close' follows; keep why, for a run that failed to open everything.
      const code = error.code || error.message;
      counts.errors[code] = (counts.errors[code] || 0) + 1;
    });
    ws.on('close', (code) => {
      if (opened) {
        counts.open -= 1;
        if (ws.churned) counts.churned += 1;
        else if (!exiting) {
          counts.closed += 1;
          counts.closeCodes[code] = (counts.closeCodes[code] || 0) + 1;
        }
      } else {
        counts.failed += 1;
        resolve();
      }
    });
  });
}

async function openAll() {
  // A bounded number of handshakes in flight, so that accept queues and SYN
  // retries do not dominate the ramp-up.
  let next = 0;
  t0 = performance.now() / 1000;
  const worker = async () => {
    while (next < args.connections) {
      next += 1;
      await connect();
    }
  };
  await Promise.all(Array.from({ length: Math.min(args.concurrency, args.connections) }, worker));
  emit('open');
  if (args.churn) setInterval(churn, 100);
}

function churn() {
  // A tenth of the rate every 100 ms, carried over so that fractions add up.
  churn.owed = (churn.owed || 0) + args.churn / 10;
  while (churn.owed >= 1 && sockets.length && !exiting) {
    churn.owed -= 1;
    const i = Math.floor(Math.random() * sockets.length);
    const ws = sockets[i];
    sockets[i] = sockets[sockets.length - 1];
    sockets.pop();
    if (ws.readyState !== WebSocket.OPEN) continue;
    ws.churned = true;
    ws.close(1000);
    connect();
  }
}

function exit() {
  if (exiting) return;
  exiting = true;
  emit('final');
  for (const ws of sockets) ws.terminate();
  // Let stdout drain before leaving.
  setTimeout(() => process.exit(0), 50);
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const command = line.trim();
    if (command === 'counts') emit('counts');
    else if (command === 'exit') exit();
  })
  .on('close', exit);
process.on('SIGTERM', exit);
process.on('SIGINT', exit);

// A storm's processes all begin at the same wall-clock instant.
setTimeout(openAll, Math.max(0, args['start-at'] - Date.now()));
