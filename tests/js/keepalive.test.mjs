// Unit tests for twisted_keepalive/static/keepalive.js under Node's test
// runner: fake timers (mock.timers), performance.now() driven by the fake
// clock, and a fake WebSocket the test opens, feeds and closes by hand.
//
//     node --test tests/js/

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  backoffDelay,
  DEFAULTS,
  Heartbeat,
  KeepaliveErrorEvent,
  KeepaliveSocket,
} from '../../twisted_keepalive/static/keepalive.js';

const PING = /^\x00wsk1 ping ([A-Za-z0-9_-]{1,64})$/;
const URL = 'ws://server.test/feed';

/**
 * A WebSocket class whose instances the test drives, and the list of them.
 * Like Node's `ws` (and older browsers), it ignores addEventListener's
 * options: a listener registered with {signal} is never removed by aborting.
 */
function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket extends EventTarget {
    #listeners = new Map(); // type -> Set of listeners

    addEventListener(type, listener) {
      super.addEventListener(type, listener);
      if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
      this.#listeners.get(type).add(listener);
    }

    removeEventListener(type, listener) {
      super.removeEventListener(type, listener);
      this.#listeners.get(type)?.delete(listener);
    }

    /** How many listeners each event type has now. */
    listenerCounts() {
      return Object.fromEntries([...this.#listeners].map(([type, set]) => [type, set.size]));
    }

    binaryType = 'blob';
    readyState = 0;
    sent = [];
    closedWith = null;

    constructor(url, protocols) {
      super();
      this.url = url;
      this.protocols = protocols;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error(`send() on a fake socket in state ${this.readyState}`);
      this.sent.push(data);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = 2;
    }

    // -- the server's side, for the test --
    open() {
      this.readyState = 1;
      this.dispatchEvent(new Event('open'));
    }

    receive(data) {
      this.dispatchEvent(new MessageEvent('message', { data }));
    }

    closed(code, reason = '', wasClean = code !== 1006) {
      this.readyState = 3;
      this.dispatchEvent(Object.assign(new Event('close'), { code, reason, wasClean }));
    }

    pings() {
      return this.sent.filter((data) => PING.test(data)).map((data) => PING.exec(data)[1]);
    }

    answerPings() {
      for (const token of this.pings().slice(this.answered ?? 0)) this.receive(`\x00wsk1 pong ${token}`);
      this.answered = this.pings().length;
    }
  }
  return { FakeWebSocket, sockets };
}

/**
 * Fake timers, and a fake performance.now() that moves with them one
 * millisecond at a time (Node's mock clock would show every timer inside one
 * tick the time at its end), and a count of the timers still pending.
 * `skip(ms)` moves the clock without running timers: a page whose timers the
 * browser throttled.
 */
function fakeClock(t) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let now = 0;
  t.mock.method(performance, 'now', () => now);
  const pending = new Set();
  const fakeSet = globalThis.setTimeout;
  const fakeClear = globalThis.clearTimeout;
  t.mock.method(globalThis, 'setTimeout', (callback, delay, ...args) => {
    const id = fakeSet(() => {
      pending.delete(id);
      callback(...args);
    }, delay);
    pending.add(id);
    return id;
  });
  t.mock.method(globalThis, 'clearTimeout', (id) => {
    pending.delete(id);
    fakeClear(id);
  });
  return {
    advance(ms) {
      t.mock.timers.tick(0); // what is due now
      for (let i = 0; i < ms; i += 1) {
        now += 1;
        t.mock.timers.tick(1);
      }
    },
    skip(ms) {
      now += ms;
    },
    pendingTimers: () => pending.size,
  };
}

/** Record every event a KeepaliveSocket dispatches. */
function record(socket) {
  const events = [];
  for (const type of ['open', 'message', 'latency', 'close', 'error']) {
    socket.addEventListener(type, (event) => events.push(event));
  }
  events.of = (type) => events.filter((event) => event.type === type);
  return events;
}

function setUp(t, options = {}, url = URL) {
  const clock = fakeClock(t);
  const { FakeWebSocket, sockets } = fakeWebSockets();
  const socket = new KeepaliveSocket(url, { WebSocket: FakeWebSocket, ...options });
  const events = record(socket);
  return { clock, sockets, socket, events };
}

describe('heartbeat', () => {
  test('the first heartbeat goes out on open, then one every pingInterval', (t) => {
    const { clock, sockets } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    const [ws] = sockets;
    ws.open();
    assert.equal(ws.pings().length, 1);
    ws.answerPings();
    clock.advance(999);
    assert.equal(ws.pings().length, 1);
    clock.advance(1);
    assert.equal(ws.pings().length, 2);
    for (let i = 0; i < 5; i += 1) {
      ws.answerPings();
      clock.advance(1000);
    }
    assert.equal(ws.pings().length, 7);
    assert.equal(new Set(ws.pings()).size, 7, 'each ping has its own token');
    assert.ok(ws.sent.every((data) => PING.test(data)), 'nothing but heartbeats was sent');
  });

  test('the interval runs ping to ping: a slow reply does not stretch it', (t) => {
    const { clock, sockets } = setUp(t, { pingInterval: 1000, pingTimeout: 900 });
    const [ws] = sockets;
    ws.open();
    clock.advance(800);
    ws.answerPings();
    clock.advance(200);
    assert.equal(ws.pings().length, 2);
  });

  test('a reply later than the interval sends the next ping at once', (t) => {
    const { clock, sockets } = setUp(t, { pingInterval: 1000, pingTimeout: 5000 });
    const [ws] = sockets;
    ws.open();
    clock.advance(3000);
    assert.equal(ws.pings().length, 1, 'one heartbeat in flight at a time');
    ws.answerPings();
    assert.equal(ws.pings().length, 2);
  });

  test('latency is the round trip in milliseconds, null before the first reply', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { pingInterval: 1000 });
    const [ws] = sockets;
    assert.equal(socket.latency, null);
    ws.open();
    assert.equal(socket.latency, null);
    clock.advance(37);
    ws.answerPings();
    assert.equal(socket.latency, 37);
    assert.deepEqual(events.of('latency').map((event) => event.latency), [37]);
    clock.advance(1000 - 37 + 12);
    ws.answerPings();
    assert.equal(socket.latency, 12);
    assert.deepEqual(events.of('latency').map((event) => event.latency), [37, 12]);
  });

  test('no reply within pingTimeout: close 4000 fires at once and the dead socket is abandoned', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    const [ws] = sockets;
    ws.open();
    ws.answerPings();
    clock.advance(1000); // second heartbeat, never answered
    clock.advance(499);
    assert.equal(events.of('close').length, 0);
    clock.advance(1);
    const [close] = events.of('close');
    assert.ok(close, 'close fired at pingTimeout, with no close event from the socket');
    assert.equal(close.code, 4000);
    assert.equal(close.reason, 'keepalive ping timeout');
    assert.equal(close.wasClean, false);
    assert.deepEqual(ws.closedWith, { code: 4000, reason: 'keepalive ping timeout' });
    assert.equal(socket.readyState, KeepaliveSocket.CONNECTING, 'reconnecting');
    // The dead socket's late news reaches nobody.
    ws.receive('late application message');
    ws.closed(1006);
    assert.equal(events.length, events.of('open').length + events.of('latency').length + 1);
  });

  test('a reply delivered in the event-loop turn after the deadline still counts', () => {
    // A page busy (or throttled) past the deadline finds the reply queued
    // behind its timer: the verdict waits one turn for it.
    const heartbeat = new Heartbeat(1000, 500);
    heartbeat.start(0);
    const { token } = heartbeat.poll(0);
    assert.deepEqual(heartbeat.poll(700), { action: 'wait' });
    assert.equal(heartbeat.wakeAt, 700);
    assert.equal(heartbeat.pong(token, 700), 700);
    assert.equal(heartbeat.poll(1000).action, 'ping');
    assert.deepEqual(heartbeat.poll(1500), { action: 'wait' });
    assert.deepEqual(heartbeat.poll(1500), { action: 'timeout', waited: 500 });
  });

  test('a throttled timer is run as soon as the page is visible again', (t) => {
    const document = Object.assign(new EventTarget(), { visibilityState: 'hidden' });
    globalThis.document = document;
    t.after(() => delete globalThis.document);
    const { clock, sockets } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    const [ws] = sockets;
    ws.open();
    ws.answerPings();
    clock.skip(60000); // a hidden tab: the clock moves, the timer does not fire
    assert.equal(ws.pings().length, 1);
    document.visibilityState = 'visible';
    document.dispatchEvent(new Event('visibilitychange'));
    assert.equal(ws.pings().length, 2);
  });

  test('without a ping timeout, heartbeats keep going and never fail the connection', (t) => {
    const { clock, sockets, events } = setUp(t, { pingInterval: 1000, pingTimeout: null });
    const [ws] = sockets;
    ws.open();
    clock.advance(10000);
    assert.equal(ws.pings().length, 11);
    assert.equal(events.of('close').length, 0);
  });

  test('pingInterval null sends no heartbeat and filters nothing', (t) => {
    const { clock, sockets, events } = setUp(t, { pingInterval: null });
    const [ws] = sockets;
    ws.open();
    clock.advance(100000);
    assert.deepEqual(ws.sent, []);
    ws.receive('\x00wsk1 pong 1');
    assert.deepEqual(events.of('message').map((event) => event.data), ['\x00wsk1 pong 1']);
  });
});

describe('messages', () => {
  test('application messages pass through untouched', (t) => {
    const { sockets, socket, events } = setUp(t);
    const [ws] = sockets;
    ws.open();
    const binary = new ArrayBuffer(8);
    const blob = new Blob(['\x00wsk1 pong 1']);
    const texts = ['hello', '', '{"wsk1": "pong"}', '\x00binary-looking text', 'wsk1 pong 1', ' \x00wsk1 pong 1'];
    for (const data of [...texts, binary, blob]) ws.receive(data);
    const received = events.of('message').map((event) => event.data);
    assert.deepEqual(received.slice(0, texts.length), texts);
    assert.equal(received[texts.length], binary, 'the same ArrayBuffer');
    assert.equal(received[texts.length + 1], blob, 'the same Blob: binary is never a heartbeat');
    assert.ok(events.of('message').every((event) => event instanceof MessageEvent));
    socket.send('to the server');
    socket.send(binary);
    assert.deepEqual(ws.sent.slice(1), ['to the server', binary]);
  });

  test('heartbeat replies and other reserved messages never surface', (t) => {
    const { sockets, events } = setUp(t);
    const [ws] = sockets;
    ws.open();
    ws.receive('\x00wsk1 pong 999'); // answers nothing
    ws.answerPings();
    ws.answerPings(); // a duplicate reply
    ws.receive('\x00wsk1 ping 1');
    ws.receive('\x00wsk2 something newer');
    assert.deepEqual(events.of('message'), []);
    assert.equal(events.of('latency').length, 1);
  });

  test('send() refuses before open and refuses reserved text', (t) => {
    const { sockets, socket } = setUp(t);
    assert.throws(() => socket.send('too early'), { name: 'InvalidStateError' });
    sockets[0].open();
    assert.throws(() => socket.send('\x00wsk1 ping x'), TypeError);
  });
});

describe('reconnect', () => {
  function refuseEveryConnection(t, options, random) {
    t.mock.method(Math, 'random', random);
    const setup = setUp(t, options);
    const refuse = () => {
      const ws = setup.sockets.at(-1);
      if (ws.readyState === 0) ws.closed(1006);
    };
    refuse();
    return { ...setup, refuse };
  }

  test('backoff doubles from reconnectDelay up to reconnectDelayMax, with full jitter', (t) => {
    const { clock, sockets, events, refuse } = refuseEveryConnection(
      t,
      { reconnectDelay: 1000, reconnectDelayMax: 30000 },
      () => 0.999,
    );
    for (let attempt = 0; attempt < 8; attempt += 1) {
      const delay = events.of('close').at(-1).reconnectDelay;
      clock.advance(Math.ceil(delay) - 1);
      assert.equal(sockets.length, attempt + 1, 'not before the delay');
      clock.advance(1);
      assert.equal(sockets.length, attempt + 2, 'the next attempt at the delay');
      refuse();
    }
    const ceilings = events.of('close').map((event) => Math.round(event.reconnectDelay / 0.999));
    assert.deepEqual(ceilings, [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]);
  });

  test('the delay is drawn from [0, ceiling): Math.random scales it', (t) => {
    const draws = [0.5, 0, 0.25];
    const { clock, sockets, events, refuse } = refuseEveryConnection(t, {}, () => draws.shift());
    clock.advance(500);
    assert.equal(sockets.length, 2);
    refuse();
    assert.equal(sockets.length, 2);
    clock.advance(0);
    assert.equal(sockets.length, 3, 'a zero delay retries on the next turn');
    refuse();
    assert.deepEqual(events.of('close').map((event) => event.reconnectDelay), [500, 0, 1000]);
  });

  test('backoffDelay() is capped for any number of failures', () => {
    assert.equal(backoffDelay(0, 1000, 30000, () => 0.5), 500);
    assert.equal(backoffDelay(3, 1000, 30000, () => 0.5), 4000);
    assert.equal(backoffDelay(5000, 1000, 30000, () => 0.5), 15000);
  });

  test('the backoff starts over once the server answers a heartbeat', (t) => {
    const { clock, sockets, events, refuse } = refuseEveryConnection(t, {}, () => 0.999);
    for (let i = 0; i < 3; i += 1) {
      clock.advance(Math.ceil(events.of('close').at(-1).reconnectDelay));
      refuse();
    }
    clock.advance(Math.ceil(events.of('close').at(-1).reconnectDelay));
    const ws = sockets.at(-1);
    ws.open();
    ws.answerPings();
    ws.closed(1001, 'going away');
    const close = events.of('close').at(-1);
    assert.equal(close.code, 1001);
    assert.equal(close.reason, 'going away');
    assert.equal(Math.round(close.reconnectDelay / 0.999), 1000);
  });

  test('an opening handshake that never completes is abandoned at connectTimeout', (t) => {
    const { clock, sockets, events } = setUp(t, { connectTimeout: 2000 });
    clock.advance(1999);
    assert.equal(events.of('close').length, 0);
    clock.advance(1);
    const [close] = events.of('close');
    assert.equal(close.code, 4000);
    assert.equal(close.reason, 'keepalive connect timeout');
    assert.equal(sockets[0].closedWith.code, 4000);
  });

  test('every connection opened fires open, and the socket works again', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    sockets[0].open();
    clock.advance(500); // no reply: abandoned
    assert.equal(socket.readyState, KeepaliveSocket.CONNECTING);
    clock.advance(Math.ceil(events.of('close')[0].reconnectDelay));
    sockets[1].open();
    assert.equal(socket.readyState, KeepaliveSocket.OPEN);
    assert.equal(events.of('open').length, 2);
    socket.send('again');
    assert.equal(sockets[1].sent.at(-1), 'again');
  });

  test('reconnect: false stays closed', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { reconnect: false });
    sockets[0].open();
    sockets[0].closed(1000, 'bye');
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    assert.equal(events.of('close')[0].reconnectDelay, null);
    clock.advance(60000);
    assert.equal(sockets.length, 1);
  });
});

describe('sockets given up on', () => {
  test('an abandoned socket keeps no listener of ours but an error sink', (t) => {
    const { clock, sockets } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    const [ws] = sockets;
    ws.open();
    assert.deepEqual(ws.listenerCounts(), { open: 1, message: 1, close: 1, error: 2 });
    clock.advance(500); // no reply: abandoned
    assert.deepEqual(ws.listenerCounts(), { open: 0, message: 0, close: 0, error: 1 });
  });

  test("an abandoned socket's late close does not end the next connection", (t) => {
    const { clock, sockets, socket, events } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    sockets[0].open();
    clock.advance(500); // abandoned
    clock.advance(Math.ceil(events.of('close')[0].reconnectDelay));
    sockets[1].open();
    sockets[0].closed(1006); // the dead server's TCP finally gives up
    sockets[0].open(); // and nothing else from it counts either
    sockets[0].receive('late');
    assert.equal(socket.readyState, KeepaliveSocket.OPEN);
    assert.equal(sockets.length, 2, 'no reconnection started');
    assert.equal(events.of('close').length, 1);
    assert.equal(events.of('open').length, 2);
    assert.deepEqual(events.of('message'), []);
  });

  test("an abandoned socket's error is swallowed, not thrown, not forwarded", (t) => {
    const { clock, sockets, socket, events } = setUp(t, { connectTimeout: 300 });
    const errors = [];
    socket.addEventListener('error', (event) => errors.push(event));
    const socketErrors = [];
    clock.advance(300); // the handshake never came: abandoned while connecting
    // Node's ws now emits `error` on an EventEmitter: a listener must exist.
    sockets[0].addEventListener('error', (event) => socketErrors.push(event));
    sockets[0].dispatchEvent(new Event('error'));
    assert.equal(socketErrors.length, 1);
    assert.equal(events.of('close').length, 1);
    assert.deepEqual(errors, []);
  });
});

describe('errors', () => {
  test("the current socket's error is forwarded, then its close", (t) => {
    const { sockets, socket, events } = setUp(t);
    const errors = [];
    socket.addEventListener('error', (event) => errors.push(event));
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:1');
    sockets[0].dispatchEvent(Object.assign(new Event('error'), { error: cause, message: cause.message }));
    sockets[0].closed(1006);
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof KeepaliveErrorEvent);
    assert.equal(errors[0].error, cause);
    assert.equal(errors[0].message, 'connect ECONNREFUSED 127.0.0.1:1');
    assert.equal(events.of('close').length, 1);
  });

  test('a browser-style error without details is forwarded with error null', (t) => {
    const { sockets, socket } = setUp(t);
    const errors = [];
    socket.addEventListener('error', (event) => errors.push(event));
    sockets[0].dispatchEvent(new Event('error'));
    assert.deepEqual([errors[0].error, errors[0].message], [null, '']);
  });

  test('the error that close() itself causes is not reported', (t) => {
    const { sockets, socket } = setUp(t);
    const errors = [];
    socket.addEventListener('error', (event) => errors.push(event));
    socket.close(); // while connecting: implementations report an error
    sockets[0].dispatchEvent(new Event('error'));
    sockets[0].closed(1006);
    assert.deepEqual(errors, []);
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
  });
});

/** Let promises settle (setImmediate is not among the mocked timers). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('maxRetries', () => {
  function refuse(ws) {
    ws.closed(1006);
  }

  test('after maxRetries failed attempts it gives up: close with reconnectDelay null, CLOSED', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { maxRetries: 2 });
    refuse(sockets[0]); // the first attempt, then two retries
    clock.advance(1000);
    refuse(sockets[1]);
    clock.advance(2000);
    refuse(sockets[2]);
    assert.deepEqual(events.of('close').map((event) => event.reconnectDelay !== null), [true, true, false]);
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    assert.equal(clock.pendingTimers(), 0);
    clock.advance(60000);
    assert.equal(sockets.length, 3);
  });

  test('the count starts over once the server answers a heartbeat', (t) => {
    const { clock, sockets, events } = setUp(t, { maxRetries: 1 });
    refuse(sockets[0]);
    clock.advance(1000);
    sockets[1].open();
    sockets[1].answerPings();
    sockets[1].closed(1001, 'going away');
    assert.notEqual(events.of('close').at(-1).reconnectDelay, null, 'one retry again');
  });

  test('maxRetries 0 never reconnects', (t) => {
    const { sockets, socket, events } = setUp(t, { maxRetries: 0 });
    sockets[0].open();
    sockets[0].closed(1001);
    assert.equal(events.of('close')[0].reconnectDelay, null);
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
  });

  test('maxRetries must be a whole number or Infinity', () => {
    const { FakeWebSocket } = fakeWebSockets();
    for (const bad of [-1, 1.5, '3', null, Number.NaN]) {
      assert.throws(() => new KeepaliveSocket(URL, { WebSocket: FakeWebSocket, maxRetries: bad }), /maxRetries must be/);
    }
  });
});

describe('reconnect()', () => {
  test('drops the open socket with 1000 "reconnect" and connects again at once', (t) => {
    const { sockets, socket, events } = setUp(t);
    sockets[0].open();
    socket.reconnect();
    assert.deepEqual(sockets[0].closedWith, { code: 1000, reason: 'reconnect' });
    assert.equal(sockets.length, 2);
    assert.equal(socket.readyState, KeepaliveSocket.CONNECTING);
    const [close] = events.of('close');
    assert.deepEqual([close.code, close.reason, close.reconnectDelay], [1000, 'reconnect', 0]);
    sockets[0].closed(1000, 'reconnect'); // its own close event reaches nobody
    assert.equal(events.of('close').length, 1);
    sockets[1].open();
    assert.equal(socket.readyState, KeepaliveSocket.OPEN);
  });

  test('starts the backoff over', (t) => {
    t.mock.method(Math, 'random', () => 0.999);
    const { clock, sockets, socket, events } = setUp(t);
    for (let i = 0; i < 4; i += 1) {
      sockets.at(-1).closed(1006);
      clock.advance(Math.ceil(events.of('close').at(-1).reconnectDelay));
    }
    socket.reconnect();
    sockets.at(-1).closed(1006);
    assert.equal(Math.round(events.of('close').at(-1).reconnectDelay / 0.999), 1000);
  });

  test('while waiting to reconnect: connects now, and the wait is cancelled', (t) => {
    const { clock, sockets, socket } = setUp(t);
    sockets[0].closed(1006);
    socket.reconnect();
    assert.equal(sockets.length, 2);
    assert.equal(clock.pendingTimers(), 1, 'the connect timeout only');
    clock.advance(1000);
    assert.equal(sockets.length, 2);
  });

  test('after close(), or once retries ran out, starts again', (t) => {
    const { sockets, socket } = setUp(t, { maxRetries: 0 });
    sockets[0].closed(1006);
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    socket.reconnect();
    sockets[1].open();
    assert.equal(socket.readyState, KeepaliveSocket.OPEN);
    socket.close();
    sockets[1].closed(1000);
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    socket.reconnect();
    assert.equal(sockets.length, 3);
    assert.equal(socket.readyState, KeepaliveSocket.CONNECTING);
  });
});

describe('URL provider', () => {
  test('is called for every attempt, and may answer with a promise', async (t) => {
    const urls = ['ws://a.test/', 'ws://b.test/'];
    const calls = [];
    const provider = () => {
      calls.push(performance.now());
      const url = urls[calls.length - 1];
      return calls.length === 1 ? url : Promise.resolve(new globalThis.URL(url));
    };
    const { clock, sockets, socket } = setUp(t, {}, provider);
    assert.equal(sockets.length, 0, 'asked a microtask later');
    assert.equal(socket.url, '');
    await settle();
    assert.equal(sockets[0].url, 'ws://a.test/');
    assert.equal(socket.url, 'ws://a.test/');
    sockets[0].closed(1006);
    clock.advance(1000);
    await settle();
    assert.equal(sockets[1].url, 'ws://b.test/');
    assert.equal(socket.url, 'ws://b.test/');
    assert.equal(calls.length, 2);
  });

  test('a provider that fails is an attempt that failed: error, close 1006, backoff', async (t) => {
    let fail = true;
    const provider = () => (fail ? Promise.reject(new Error('no token')) : 'ws://ok.test/');
    const { clock, sockets, socket, events } = setUp(t, {}, provider);
    const errors = [];
    socket.addEventListener('error', (event) => errors.push(event));
    await settle();
    assert.equal(sockets.length, 0);
    assert.equal(errors[0].error.message, 'no token');
    const [close] = events.of('close');
    assert.deepEqual([close.code, close.reason, close.wasClean], [1006, 'no URL: no token', false]);
    assert.notEqual(close.reconnectDelay, null);
    fail = false;
    clock.advance(1000);
    await settle();
    assert.equal(sockets.length, 1);
  });

  test('an answer that comes after the connect timeout is dropped', async (t) => {
    const answers = [];
    const provider = () => new Promise((resolve) => answers.push(resolve));
    const { clock, sockets, events } = setUp(t, { connectTimeout: 500 }, provider);
    await settle();
    clock.advance(500);
    assert.equal(events.of('close')[0].reason, 'keepalive connect timeout');
    answers[0]('ws://late.test/');
    await settle();
    assert.equal(sockets.length, 0);
  });

  test('close() while it is answering: no socket is ever made', async (t) => {
    let answer;
    const { sockets, socket } = setUp(t, {}, () => new Promise((resolve) => (answer = resolve)));
    await settle();
    socket.close();
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    answer('ws://late.test/');
    await settle();
    assert.equal(sockets.length, 0);
  });
});

describe('send() while not open', () => {
  test('throws InvalidStateError saying nothing is queued, also while reconnecting', (t) => {
    const { sockets, socket } = setUp(t);
    sockets[0].open();
    sockets[0].closed(1006);
    assert.throws(() => socket.send('lost?'), {
      name: 'InvalidStateError',
      message: /messages are not queued/,
    });
    socket.close();
    assert.throws(() => socket.send('late'), { name: 'InvalidStateError', message: /closed/ });
  });
});

describe('close()', () => {
  test('closes the socket and leaves no timer behind', (t) => {
    const { clock, sockets, socket, events } = setUp(t, { pingInterval: 1000, pingTimeout: 500 });
    const [ws] = sockets;
    ws.open();
    assert.ok(clock.pendingTimers() > 0);
    socket.close(1000, 'done');
    assert.equal(clock.pendingTimers(), 0);
    assert.deepEqual(ws.closedWith, { code: 1000, reason: 'done' });
    assert.equal(socket.readyState, KeepaliveSocket.CLOSING);
    ws.closed(1000, 'done');
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    const [close] = events.of('close');
    assert.equal(close.code, 1000);
    assert.equal(close.reconnectDelay, null);
    assert.equal(clock.pendingTimers(), 0);
    clock.advance(120000);
    assert.equal(sockets.length, 1);
    assert.equal(ws.pings().length, 1);
  });

  test('while waiting to reconnect: closed at once, no timer, no more attempts', (t) => {
    const { clock, sockets, socket } = setUp(t);
    sockets[0].closed(1006);
    assert.equal(clock.pendingTimers(), 1);
    socket.close();
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    assert.equal(clock.pendingTimers(), 0);
    clock.advance(60000);
    assert.equal(sockets.length, 1);
  });

  test('from a close listener, cancels the reconnection', (t) => {
    const { clock, sockets, socket } = setUp(t);
    socket.addEventListener('close', () => socket.close());
    sockets[0].open();
    sockets[0].closed(1001, 'going away');
    assert.equal(socket.readyState, KeepaliveSocket.CLOSED);
    assert.equal(clock.pendingTimers(), 0);
  });
});

describe('options', () => {
  test('defaults are documented values', () => {
    assert.deepEqual({ ...DEFAULTS }, {
      pingInterval: 20000,
      pingTimeout: 20000,
      connectTimeout: 20000,
      reconnect: true,
      reconnectDelay: 1000,
      reconnectDelayMax: 30000,
      maxRetries: Infinity,
    });
  });

  test('bad options are refused by name', () => {
    const { FakeWebSocket } = fakeWebSockets();
    const make = (options) => new KeepaliveSocket(URL, { WebSocket: FakeWebSocket, ...options });
    assert.throws(() => make({ pingIntervall: 5 }), /unknown KeepaliveSocket option "pingIntervall"/);
    assert.throws(() => make({ pingInterval: -1 }), /pingInterval must be a positive number of milliseconds or null, not -1/);
    assert.throws(() => make({ pingTimeout: '20s' }), TypeError);
    assert.throws(() => make({ reconnectDelay: null }), /reconnectDelay must be a positive number of milliseconds, not/);
    assert.throws(() => make({ reconnectDelay: 5000, reconnectDelayMax: 1000 }), RangeError);
    assert.throws(() => make({ reconnect: 'yes' }), TypeError);
    assert.throws(() => new KeepaliveSocket(URL, { WebSocket: undefined }), /pass one as the WebSocket option/);
  });

  test('protocols and binaryType reach every WebSocket', (t) => {
    const { clock, sockets, socket } = setUp(t, { protocols: ['chat'] });
    socket.binaryType = 'arraybuffer';
    sockets[0].closed(1006);
    clock.advance(1000);
    assert.deepEqual(sockets.map((ws) => [ws.protocols, ws.binaryType]), [
      [['chat'], 'arraybuffer'],
      [['chat'], 'arraybuffer'],
    ]);
  });
});
