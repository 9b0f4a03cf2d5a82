#!/usr/bin/env node
// Runs keepalive.js's KeepaliveSocket against a real server with a real
// WebSocket implementation, and reports what it saw: one JSON object a line.
//
//   node real_sockets.mjs ws|undici|chromium URL [OPTIONS_JSON]
//
// OPTIONS_JSON holds KeepaliveSocket options, and "urls": [...] for a URL
// provider that gives each URL in turn, then the last one again.
//
// ws and undici run in this Node process (their WebSocket classes, from
// tests/peers/node_modules); chromium runs the module in Debian's headless
// Chromium (playwright-core), in a page of the server's own origin.
//
// Every WebSocket the module creates is counted: "live" is how many are
// CONNECTING or OPEN at once, sampled every 5 ms and on every event; the
// "exit" event also lists, per socket, the event types the module still
// listens for on it ("listening").
// Events:
//   {"event":"open"|"latency"|"close"|"error"|"message", "n":<1 for the first
//    of its kind, 2 ...>, "live":n, "sockets":<created so far>, ...fields}
//   {"event":"live","live":n,"max":m}       whenever the count changes
// Commands on stdin, one a line:
//   close        socket.close(); then, for ws and undici, nothing keeps the
//                process alive but the sockets: it exits when they are gone
//   reconnect    socket.reconnect()
//   send TEXT    socket.send(TEXT) ({"event":"send-error",...} if it throws)
//   quit         exit now

import { createRequire } from 'node:module';
import process from 'node:process';
import { createInterface } from 'node:readline';

const require = createRequire(new URL('../peers/package.json', import.meta.url));
const MODULE = new URL('../../twisted_keepalive/static/keepalive.js', import.meta.url);

const [kind, url, optionsJson = '{}'] = process.argv.slice(2);
const options = JSON.parse(optionsJson);

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// The part that runs where the WebSocket lives (this process, or the page):
// a counting subclass of the implementation, the socket, its events.
function harness(KeepaliveSocket, Base, url, options, report) {
  const sockets = [];
  // The listeners added to each socket and not removed since: whatever the
  // implementation does with addEventListener's options, what the module
  // leaves attached to a socket it has let go of is counted here.
  const attached = new Map();
  const listening = (ws) => {
    if (!attached.has(ws)) attached.set(ws, new Map());
    return attached.get(ws);
  };
  class Counted extends Base {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
    addEventListener(type, listener, options) {
      super.addEventListener(type, listener, options);
      listening(this).set(listener, type);
    }
    removeEventListener(type, listener, options) {
      super.removeEventListener(type, listener, options);
      if (listening(this).get(listener) === type) listening(this).delete(listener);
    }
  }
  const live = () => sockets.filter((ws) => ws.readyState === 0 || ws.readyState === 1).length;
  let last = 0;
  let max = 0;
  const sample = () => {
    const now = live();
    max = Math.max(max, now);
    if (now !== last) {
      last = now;
      report({ event: 'live', live: now, max });
    }
    return now;
  };
  const sampler = setInterval(sample, 5);
  sampler.unref?.();
  // OPTIONS_JSON's "urls": a URL provider that gives each in turn, then the last.
  const { urls, ...settings } = options;
  let attempt = 0;
  const source = urls ? () => urls[Math.min(attempt++, urls.length - 1)] : url;
  const socket = new KeepaliveSocket(source, { ...settings, WebSocket: Counted });
  const seen = {};
  for (const type of ['open', 'latency', 'close', 'error', 'message']) {
    socket.addEventListener(type, (event) => {
      seen[type] = (seen[type] ?? 0) + 1;
      const fields = { event: type, n: seen[type], live: sample(), sockets: sockets.length };
      if (type === 'latency') fields.latency = event.latency;
      if (type === 'close') Object.assign(fields, { code: event.code, reason: event.reason, delay: event.reconnectDelay });
      if (type === 'error') fields.message = String(event.error?.message ?? event.message ?? '');
      if (type === 'message') fields.data = String(event.data);
      if (type === 'open') fields.url = socket.url;
      report(fields);
    });
  }
  return {
    command(line) {
      const [verb, ...rest] = line.split(' ');
      if (verb === 'close') {
        socket.close();
        // Wait for the sockets themselves, not a timer: the process must be
        // able to exit with nothing but them keeping it alive.
        clearInterval(sampler);
        report({ event: 'closing', live: sample(), max });
      } else if (verb === 'reconnect') {
        socket.reconnect();
      } else if (verb === 'send') {
        try {
          socket.send(rest.join(' '));
        } catch (error) {
          report({ event: 'send-error', name: error.name, message: error.message });
        }
      }
    },
    counts: () => ({
      live: live(),
      max,
      sockets: sockets.length,
      states: sockets.map((ws) => ws.readyState),
      // The event types still listened for on each socket, in creation order.
      listening: sockets.map((ws) => [...listening(ws).values()].sort()),
    }),
  };
}

async function inNode(Base) {
  const { KeepaliveSocket } = await import(MODULE);
  const running = harness(KeepaliveSocket, Base, url, options, emit);
  process.on('exit', () => emit({ event: 'exit', ...running.counts() }));
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line === 'quit') process.exit(0);
    running.command(line);
    // After close, stdin must not keep the process alive either.
    if (line === 'close') lines.close(), process.stdin.unref?.(), process.stdin.destroy();
  });
}

async function inChromium() {
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
  const page = await browser.newPage();
  page.on('pageerror', (error) => emit({ event: 'pageerror', message: error.message }));
  await page.exposeFunction('report', emit);
  // A page of the server's origin: the module is imported from where it is served.
  await page.goto(new URL('/keepalive.js', url.replace(/^ws/, 'http')).href);
  await page.evaluate(
    async ([harnessSource, url, options]) => {
      const { KeepaliveSocket } = await import('/keepalive.js');
      const make = new Function(`return (${harnessSource})`)();
      window.running = make(KeepaliveSocket, WebSocket, url, options, window.report);
    },
    [harness.toString(), url, options],
  );
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line === 'quit') break;
    await page.evaluate((line) => window.running.command(line), line);
    if (line === 'close') {
      // No process to exit here: wait for every socket to be CLOSED.
      const deadline = Date.now() + 10000;
      let counts;
      do {
        await new Promise((resolve) => setTimeout(resolve, 50));
        counts = await page.evaluate(() => window.running.counts());
      } while (counts.states.some((state) => state !== 3) && Date.now() < deadline);
      counts.allClosed = counts.states.every((state) => state === 3);
      emit({ event: 'exit', ...counts });
      break;
    }
  }
  await browser.close();
}

if (kind === 'ws') {
  await inNode(require('ws'));
} else if (kind === 'undici') {
  await inNode(require('undici').WebSocket);
} else if (kind === 'chromium') {
  await inChromium();
} else {
  process.stderr.write('usage: node real_sockets.mjs ws|undici|chromium URL [OPTIONS_JSON]\n');
  process.exit(2);
}
