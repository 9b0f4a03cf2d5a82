#!/usr/bin/env node
// Opens the demo page of a `twistd wskeepalive` server in headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core; never a downloaded
// browser) and reports what the page's KeepaliveSocket saw: one JSON object
// per line on stdout.
//
//   node browser_demo.mjs PAGE_URL
//
// Events:
//   {"event":"loaded","status":200,"content_type":"...","cache_control":"..."}
//   the page's own events, as it records them in window.keepaliveDemo.events:
//   {"event":"open"|"latency"|"message"|"close"|"error","seq":n,"t":<page performance.now() ms>,...}
//   {"event":"pageerror","message":"..."}   {"event":"console","text":"..."} (errors only)
//   {"event":"screenshot","path":"...","bytes":n}
// Commands, one a line on stdin:
//   screenshot PATH     save a PNG of the page
//   quit                close the browser and exit 0 (so does the end of stdin)

import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];
const POLL_MS = 25;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const [pageUrl] = process.argv.slice(2);
if (!pageUrl) {
  process.stderr.write('usage: node browser_demo.mjs PAGE_URL\n');
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), 'keepalive-chromium-'));
let context;
let finished = false;

async function finish(code) {
  if (finished) return;
  finished = true;
  try {
    await context?.close();
  } finally {
    rmSync(profile, { recursive: true, force: true });
    process.exit(code);
  }
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 880, height: 600 },
    deviceScaleFactor: 1,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (error) => emit({ event: 'pageerror', message: error.message }));
  page.on('console', (message) => {
    if (message.type() === 'error') emit({ event: 'console', text: message.text() });
  });
  const response = await page.goto(pageUrl);
  emit({
    event: 'loaded',
    status: response.status(),
    content_type: response.headers()['content-type'],
    cache_control: response.headers()['cache-control'],
  });

  let seen = 0;
  const poll = async () => {
    while (!finished) {
      const fresh = await page
        .evaluate((after) => (window.keepaliveDemo?.events ?? []).filter((e) => e.seq > after), seen)
        .catch(() => []);
      for (const event of fresh) {
        emit(event);
        seen = event.seq;
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };
  poll();

  const commands = createInterface({ input: process.stdin });
  for await (const line of commands) {
    const [command, ...rest] = line.trim().split(/\s+/);
    if (command === 'screenshot') {
      const path = rest.join(' ');
      await page.screenshot({ path });
      emit({ event: 'screenshot', path, bytes: statSync(path).size });
    } else if (command === 'quit') {
      break;
    } else if (command) {
      emit({ event: 'error', error: `unknown command ${JSON.stringify(command)}` });
    }
  }
  await finish(0);
} catch (error) {
  process.stderr.write(`browser_demo: ${error.stack || error}\n`);
  await finish(1);
}
