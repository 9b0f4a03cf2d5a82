#!/usr/bin/env node
// Drives Debian's headless Chromium over the DevTools protocol, with nothing
// but Node and the `ws` package: it opens one tab on URL and relays what the
// page logs, and crashes or closes that tab on command.
//
//   node chromium_cdp.mjs URL [--chromium /usr/bin/chromium]
//
// The page reports to the test with console.log("KA " + JSON.stringify(obj));
// each such object is printed as {"event": "page", ...obj}.  Other events,
// one JSON object per line:
//   {"event":"browser","product":"Chrome/...","pid":n}   Chromium is up
//   {"event":"tab","targetId":"..."}                      the tab exists
//   {"event":"crashed"}           the tab's renderer died (Inspector.targetCrashed)
//   {"event":"destroyed"}         the tab is gone (Target.targetDestroyed)
//   {"event":"error","error":"..."}
// Commands on stdin, one per line:
//   crash    Page.crash: the renderer process of the tab dies at once
//   close    Target.closeTarget: the tab is closed as a user would
//   quit     close the browser and exit
// Chromium runs in its own process group with a fresh profile directory;
// on exit (quit, stdin closed, SIGTERM) the group is killed and the profile
// removed.  Never a downloaded browser: only the executable given.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import process from 'node:process';
import { createInterface } from 'node:readline';
import { WebSocket } from 'ws';

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const args = process.argv.slice(2);
const url = args[0];
const chromiumAt = args.indexOf('--chromium');
const executable = chromiumAt >= 0 ? args[chromiumAt + 1] : '/usr/bin/chromium';
if (!url) {
  process.stderr.write('usage: chromium_cdp.mjs URL [--chromium PATH]\n');
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), 'ka-chromium-'));
const browser = spawn(executable, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--no-default-browser-check',
  '--disable-extensions', '--disable-dev-shm-usage', '--remote-debugging-port=0',
  `--user-data-dir=${profile}`, 'about:blank',
], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });

let exiting = false;
function shutdown(code) {
  if (exiting) return;
  exiting = true;
  try { process.kill(-browser.pid, 'SIGKILL'); } catch { /* already gone */ }
  // Give the kernel a moment to release the profile's files.
  setTimeout(() => {
    rmSync(profile, { recursive: true, force: true });
    process.exit(code);
  }, 200);
}
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
browser.on('exit', () => { if (!exiting) { emit({ event: 'error', error: 'chromium exited' }); shutdown(1); } });

let nextId = 1;
const pending = new Map();
let cdp;
let sessionId;
let targetId;

function send(method, params = {}, session = undefined) {
  const id = nextId++;
  const message = { id, method, params };
  if (session) message.sessionId = session;
  cdp.send(JSON.stringify(message));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}

function onMessage(raw) {
  const message = JSON.parse(raw.toString());
  if (message.id !== undefined) {
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (!waiter) return;
    if (message.error) waiter.reject(new Error(message.error.message));
    else waiter.resolve(message.result);
    return;
  }
  const { method, params } = message;
  if (method === 'Runtime.consoleAPICalled') {
    const text = params.args.map((a) => a.value).join(' ');
    if (typeof text === 'string' && text.startsWith('KA ')) emit({ event: 'page', ...JSON.parse(text.slice(3)) });
  } else if (method === 'Inspector.targetCrashed') {
    emit({ event: 'crashed' });
  } else if (method === 'Target.targetDestroyed' && params.targetId === targetId) {
    emit({ event: 'destroyed' });
  }
}

async function start(endpoint) {
  cdp = new WebSocket(endpoint, { perMessageDeflate: false });
  cdp.on('message', onMessage);
  cdp.on('close', () => { if (!exiting) shutdown(0); });
  await new Promise((resolve, reject) => { cdp.once('open', resolve); cdp.once('error', reject); });
  const version = await send('Browser.getVersion');
  emit({ event: 'browser', product: version.product, pid: browser.pid });
  await send('Target.setDiscoverTargets', { discover: true });
  ({ targetId } = await send('Target.createTarget', { url: 'about:blank' }));
  ({ sessionId } = await send('Target.attachToTarget', { targetId, flatten: true }));
  await send('Runtime.enable', {}, sessionId);
  await send('Inspector.enable', {}, sessionId);
  await send('Page.enable', {}, sessionId);
  await send('Page.navigate', { url }, sessionId);
  emit({ event: 'tab', targetId });
}

async function command(line) {
  const name = line.trim();
  try {
    if (name === 'crash') {
      // The renderer dies before it can answer: do not wait for a reply.
      send('Page.crash', {}, sessionId).catch(() => {});
    } else if (name === 'close') {
      await send('Target.closeTarget', { targetId });
    } else if (name === 'quit') {
      await send('Browser.close').catch(() => {});
      shutdown(0);
    }
  } catch (err) {
    emit({ event: 'error', error: String(err && err.message) });
  }
}

// Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID".
let stderr = '';
browser.stderr.on('data', (chunk) => {
  if (cdp) return;
  stderr += chunk.toString();
  const found = stderr.match(/DevTools listening on (ws:\/\/\S+)/);
  if (found) {
    start(found[1]).catch((err) => { emit({ event: 'error', error: String(err && err.message) }); shutdown(1); });
  }
});

createInterface({ input: process.stdin }).on('line', (line) => { command(line); }).on('close', () => shutdown(0));
