#!/usr/bin/env node
// Third-party WebSocket test peer built on Node's `ws` package.
//
// Integration tests run this script as a subprocess to talk to
// twisted-keepalive's Autobahn/Twisted protocols from an independent
// implementation, and read what the peer saw from its stdout: one JSON
// object per line.  Same interface as websockets_peer.py.  No dependency
// besides `ws` (install with `npm ci` in tests/peers).
//
// Modes:
//   node ws_peer.mjs client URL [--no-pong] [--duration S] [--send-every S]
//   node ws_peer.mjs server --port P [--host 127.0.0.1] [--no-pong]
//   node ws_peer.mjs many URL --count N [--no-pong] [--duration S]
//                    [--local-address 127.0.0.x] [--concurrency K]
//
// Events (the server adds "conn": n, numbered from 1, to per-connection ones):
//   {"event":"listening","port":P}                          (server only)
//   {"event":"open"}                                        (client)
//   {"event":"open","remote":"host:port","conn":n}          (server)
//   {"event":"ping","t":<performance.now()/1000>,"mono":<CLOCK_MONOTONIC s>,"data":"<hex>"}
//   {"event":"pong","t":...,"mono":...,"data":"<hex>"}
//   {"event":"message","data":"<text>"}  /  {"event":"message","binary":true,"data":"<hex>"}
//   {"event":"close","code":int|null,"reason":str}          (1006 if no Close frame came)
//   {"event":"error","error":"<message>"}
// many mode prints only, every second and at the end:
//   {"event":"progress","elapsed":s,"opened":n,"closed":n,"pings":n,"errors":n}
//   {"event":"summary","elapsed":s,"opened":n,"closed":n,"pings":n,"errors":n,
//    "close_codes":{"1011":k,...}}
//
// "mono" is process.hrtime() (CLOCK_MONOTONIC on Linux), comparable with
// Python's time.monotonic() in another process; "t" is performance.now()/1000.
// --no-pong passes autoPong:false so Pings are never answered; otherwise ws
// answers them automatically.  ws has no keepalive of its own, so the only
// Pings on the wire are the other side's.  --duration closes with 1000 after
// S seconds; SIGINT/SIGTERM close with 1000 (server: 1001) and exit 0.

import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { WebSocket, WebSocketServer } from 'ws';

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n'); // synchronous for pipes on Linux
}

function die(msg) {
  process.stderr.write(`ws_peer: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const [mode, ...rest] = argv;
  const opts = { mode, positional: [], noPong: false, host: '127.0.0.1', concurrency: 100 };
  const valued = {
    '--duration': ['duration', Number],
    '--send-every': ['sendEvery', Number],
    '--port': ['port', Number],
    '--host': ['host', String],
    '--count': ['count', Number],
    '--local-address': ['localAddress', String],
    '--concurrency': ['concurrency', Number],
  };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--no-pong') {
      opts.noPong = true;
    } else if (arg in valued) {
      const [key, conv] = valued[arg];
      if (i + 1 >= rest.length) die(`${arg} needs a value`);
      const value = conv(rest[++i]);
      if (conv === Number && !Number.isFinite(value)) die(`bad number for ${arg}`);
      opts[key] = value;
    } else if (arg.startsWith('--')) {
      die(`unknown option ${arg}`);
    } else {
      opts.positional.push(arg);
    }
  }
  return opts;
}

function frameTimes() {
  return { t: performance.now() / 1000, mono: Number(process.hrtime.bigint()) / 1e9 };
}

function messageEvent(data, isBinary, extra) {
  return isBinary
    ? { event: 'message', binary: true, data: Buffer.from(data).toString('hex'), ...extra }
    : { event: 'message', data: data.toString('utf8'), ...extra };
}

function onStopSignals(fn) {
  process.on('SIGINT', fn);
  process.on('SIGTERM', fn);
}

function runClient(opts) {
  const [url] = opts.positional;
  if (!url) die('client needs URL');
  const ws = new WebSocket(url, { autoPong: !opts.noPong });
  const timers = [];
  ws.on('open', () => {
    emit({ event: 'open' });
    if (opts.sendEvery !== undefined) {
      let n = 0;
      timers.push(setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(`tick ${++n}`);
      }, opts.sendEvery * 1000));
    }
    if (opts.duration !== undefined) {
      timers.push(setTimeout(() => ws.close(1000), opts.duration * 1000));
    }
  });
  ws.on('ping', (data) => emit({ event: 'ping', ...frameTimes(), data: data.toString('hex') }));
  ws.on('pong', (data) => emit({ event: 'pong', ...frameTimes(), data: data.toString('hex') }));
  ws.on('message', (data, isBinary) => emit(messageEvent(data, isBinary, {})));
  let opened = false;
  ws.on('open', () => { opened = true; });
  ws.on('error', (err) => {
    if (!opened) {
      emit({ event: 'error', error: String(err && err.message) });
      process.exitCode = 1;
    }
  });
  ws.on('close', (code, reason) => {
    timers.forEach(clearTimeout);
    if (opened) emit({ event: 'close', code: code ?? null, reason: reason.toString('utf8') });
    process.removeAllListeners('SIGINT');
    process.removeAllListeners('SIGTERM');
  });
  onStopSignals(() => {
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(1000);
  });
}

function runServer(opts) {
  if (opts.port === undefined) die('server needs --port');
  const wss = new WebSocketServer({ host: opts.host, port: opts.port, autoPong: !opts.noPong });
  let nextId = 1;
  wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
  wss.on('error', (err) => die(String(err && err.message)));
  wss.on('connection', (ws, req) => {
    const extra = { conn: nextId++ };
    const { remoteAddress, remotePort } = req.socket;
    emit({ event: 'open', remote: `${remoteAddress}:${remotePort}`, ...extra });
    ws.on('ping', (data) => emit({ event: 'ping', ...frameTimes(), data: data.toString('hex'), ...extra }));
    ws.on('pong', (data) => emit({ event: 'pong', ...frameTimes(), data: data.toString('hex'), ...extra }));
    ws.on('message', (data, isBinary) => {
      emit(messageEvent(data, isBinary, extra));
      ws.send(data, { binary: isBinary });
    });
    ws.on('error', () => {}); // the close event reports the outcome
    ws.on('close', (code, reason) => {
      emit({ event: 'close', code: code ?? null, reason: reason.toString('utf8'), ...extra });
    });
  });
  onStopSignals(() => {
    for (const ws of wss.clients) ws.close(1001);
    wss.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  });
}

function runMany(opts) {
  const [url] = opts.positional;
  if (!url) die('many needs URL');
  if (!(opts.count > 0)) die('many needs --count N (N > 0)');
  const start = performance.now();
  const elapsed = () => Math.round(performance.now() - start) / 1000;
  const stats = { opened: 0, closed: 0, pings: 0, errors: 0 };
  const closeCodes = {};
  const sockets = new Set();
  let started = 0;
  let inFlight = 0; // handshakes not finished yet
  let stopping = false;
  let finished = false;

  const progress = setInterval(() => emit({ event: 'progress', elapsed: elapsed(), ...stats }), 1000);

  function finish() {
    if (finished) return;
    finished = true;
    clearInterval(progress);
    emit({ event: 'summary', elapsed: elapsed(), ...stats, close_codes: closeCodes });
    process.exit(0);
  }

  function maybeDone() {
    if (sockets.size === 0 && (stopping || started >= opts.count)) finish();
  }

  function openMore() {
    while (!stopping && started < opts.count && inFlight < opts.concurrency) {
      started++;
      inFlight++;
      const options = { autoPong: !opts.noPong };
      if (opts.localAddress) options.localAddress = opts.localAddress;
      const ws = new WebSocket(url, options);
      sockets.add(ws);
      let handshaking = true;
      const handshakeDone = () => {
        if (handshaking) { handshaking = false; inFlight--; setImmediate(openMore); }
      };
      ws.on('open', () => {
        stats.opened++;
        handshakeDone();
        if (stopping) ws.close(1000);
      });
      ws.on('ping', () => { stats.pings++; });
      ws.on('error', () => { if (handshaking) stats.errors++; });
      ws.on('close', (code) => {
        const wasOpen = !handshaking;
        handshakeDone();
        sockets.delete(ws);
        if (wasOpen) {
          stats.closed++;
          const key = String(code);
          closeCodes[key] = (closeCodes[key] || 0) + 1;
        }
        maybeDone();
      });
    }
  }

  function stop() {
    if (stopping) return;
    stopping = true;
    for (const ws of sockets) {
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
      else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    }
    // Peers that never answer the Close frame: give up after a while.
    setTimeout(() => {
      for (const ws of sockets) ws.terminate();
      setTimeout(finish, 1000).unref();
    }, 5000).unref();
    maybeDone();
  }

  if (opts.duration !== undefined) setTimeout(stop, opts.duration * 1000);
  onStopSignals(stop);
  openMore();
}

const opts = parseArgs(process.argv.slice(2));
if (opts.mode === 'client') runClient(opts);
else if (opts.mode === 'server') runServer(opts);
else if (opts.mode === 'many') runMany(opts);
else die('usage: ws_peer.mjs client URL | server --port P | many URL --count N (see header)');
