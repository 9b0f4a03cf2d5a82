#!/usr/bin/env node
// Many keepalive.js clients of a fleet (tests/fleet): COUNT KeepaliveSockets,
// each reconnecting on its own, in this Node process (Node's `ws` as the
// WebSocket) or in one page of Debian's headless Chromium (playwright-core).
//
//   node fleet_clients.mjs ws|chromium URL COUNT [OPTIONS_JSON]
//
// OPTIONS_JSON holds KeepaliveSocket options (milliseconds).  The fleet's
// backends send each connection one message first, {"backend": PORT,
// "pid": PID}: that is how a client learns which backend served it.
//
// One JSON object a line on stdout; "mono" is CLOCK_MONOTONIC in seconds
// (process.hrtime), comparable with time.monotonic() in the test; for
// Chromium it is stamped here as the page reports, within a few ms.
//   {"event":"open","client":i,"backend":port,"pid":pid,"mono":t}
//       a connection opened and its backend said who it is
//   {"event":"close","client":i,"code":c,"reason":r,"opened":bool,"delay":ms|null,"mono":t}
//       "opened" false: an attempt that never opened (refused, failed
//       handshake, connect timeout); "delay": the wait before the next attempt
//   {"event":"error","client":i,"message":m,"mono":t}
//   {"event":"exit","live":n}      after the "close" command, once every
//                                  client is CLOSED (or 10 s have passed)
// Commands on stdin, one a line: "close" (close every client, then exit),
// "quit" (exit now).  The same format as tests/peers/reconnecting_peer.py.

import { createRequire } from 'node:module';
import process from 'node:process';
import { createInterface } from 'node:readline';

const require = createRequire(new URL('./package.json', import.meta.url));
const MODULE = new URL('../../twisted_keepalive/static/keepalive.js', import.meta.url);

const [kind, url, countText, optionsJson = '{}'] = process.argv.slice(2);
const count = Number(countText);
if (!['ws', 'chromium'].includes(kind) || !url || !(count > 0)) {
  process.stderr.write('usage: node fleet_clients.mjs ws|chromium URL COUNT [OPTIONS_JSON]\n');
  process.exit(2);
}
const options = JSON.parse(optionsJson);

const mono = () => Number(process.hrtime.bigint()) / 1e9;

function emit(obj) {
  process.stdout.write(JSON.stringify({ ...obj, mono: obj.mono ?? mono() }) + '\n');
}

// Runs where the WebSockets live (here, or in the page): the clients and
// their events, reported through `report`.
function clients(KeepaliveSocket, WebSocket, url, count, options, report) {
  const sockets = [];
  for (let client = 0; client < count; client++) {
    const socket = new KeepaliveSocket(url, { ...options, WebSocket });
    let opened = false;
    socket.addEventListener('open', () => { opened = true; });
    socket.addEventListener('message', (event) => {
      let identity;
      try { identity = JSON.parse(String(event.data)); } catch { return; }
      if (identity && typeof identity.backend === 'number') {
        report({ event: 'open', client, backend: identity.backend, pid: identity.pid });
      }
    });
    socket.addEventListener('close', (event) => {
      report({
        event: 'close', client, code: event.code, reason: event.reason, opened,
        delay: event.reconnectDelay ?? null,
      });
      opened = false;
    });
    socket.addEventListener('error', (event) => {
      report({ event: 'error', client, message: String(event.error?.message ?? event.message ?? '') });
    });
    sockets.push(socket);
  }
  return {
    close() { for (const socket of sockets) socket.close(); },
    live: () => sockets.filter((socket) => socket.readyState !== 3).length,
  };
}

async function waitForClosed(live) {
  const deadline = Date.now() + 10000;
  while ((await live()) > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return live();
}

async function inNode() {
  const { KeepaliveSocket } = await import(MODULE);
  const running = clients(KeepaliveSocket, require('ws'), url, count, options, emit);
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'quit') break;
    if (line === 'close') {
      running.close();
      emit({ event: 'exit', live: await waitForClosed(running.live) });
      break;
    }
  }
  process.exit(0);
}

async function inChromium() {
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
  try {
    const page = await browser.newPage();
    page.on('pageerror', (error) => emit({ event: 'pageerror', message: error.message }));
    await page.exposeFunction('report', (obj) => emit(obj));
    // A page of the fleet's own origin, through the balancer: the module is
    // imported from where it is served.
    await page.goto(new URL('/keepalive.js', url.replace(/^ws/, 'http')).href);
    await page.evaluate(
      async ([source, url, count, options]) => {
        const { KeepaliveSocket } = await import('/keepalive.js');
        const make = new Function(`return (${source})`)();
        window.running = make(KeepaliveSocket, WebSocket, url, count, options, window.report);
      },
      [clients.toString(), url, count, options],
    );
    for await (const line of createInterface({ input: process.stdin })) {
      if (line === 'quit') break;
      if (line === 'close') {
        await page.evaluate(() => window.running.close());
        emit({ event: 'exit', live: await waitForClosed(() => page.evaluate(() => window.running.live())) });
        break;
      }
    }
  } finally {
    await browser.close();
  }
  process.exit(0);
}

await (kind === 'ws' ? inNode() : inChromium());
