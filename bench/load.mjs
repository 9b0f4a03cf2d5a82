// Load generator for bench/cpu_per_ping.py: N WebSocket clients in one Node
// process, on the `ws` library, which answers every Ping with a Pong by itself.
//
//   node bench/load.mjs --url ws://127.0.0.1:9000/ --connections 4000
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
  const args = { url: 'ws://127.0.0.1:9000/', connections: 100, concurrency: 256 };
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args)) throw new Error(`unknown option ${argv[i]}`);
    args[name] = name === 'url' ? argv[i + 1] : Number(argv[i + 1]);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const sockets = [];
const counts = {
  connections: args.connections,
  open: 0, // open right now
  opened: 0, // ever opened
  failed: 0, // never opened
  closed: 0, // opened, then closed before we asked (a server timeout, say)
  pings: 0,
  pinged: 0, // connections that have received at least one Ping
};
let exiting = false;

function emit(type) {
  process.stdout.write(JSON.stringify({ type, t: performance.now() / 1000, ...counts }) + '\n');
}

function connect() {
  return new Promise((resolve) => {
    // No permessage-deflate: control frames are never compressed, and the
    // zlib contexts it would add per connection would swamp the memory figures.
    const ws = new WebSocket(args.url, { perMessageDeflate: false });
    let pinged = false;
    let opened = false;
    ws.on('open', () => {
      opened = true;
      counts.opened += 1;
      counts.open += 1;
      sockets.push(ws);
      resolve();
    });
    ws.on('ping', () => {
      counts.pings += 1;
      if (!pinged) {
        pinged = true;
        counts.pinged += 1;
      }
    });
    ws.on('error', () => {}); // 'close' follows and tells us what we need
    ws.on('close', () => {
      if (opened) {
        counts.open -= 1;
        if (!exiting) counts.closed += 1;
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
  const worker = async () => {
    while (next < args.connections) {
      next += 1;
      await connect();
    }
  };
  await Promise.all(Array.from({ length: Math.min(args.concurrency, args.connections) }, worker));
  emit('open');
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

openAll();
