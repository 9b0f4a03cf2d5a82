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
  KeepaliveSocket,
} from '../../twisted_keepalive/static/keepalive.js';

const PING = /^\x00wsk1 ping ([A-Za-z0-9_-]{1,64})$/;
const URL = 'ws://server.test/feed';

/** A WebSocket class whose instances the test drives, and the list of them. */
function fakeWebSockets() {
  const sockets = [];
  class FakeWebSocket extends EventTarget {
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
  for (const type of ['open', 'message', 'latency', 'close']) {
    socket.addEventListener(type, (event) => events.push(event));
  }
  events.of = (type) => events.filter((event) => event.type === type);
  return events;
}

function setUp(t, options = {}) {
  const clock = fakeClock(t);
  const { FakeWebSocket, sockets } = fakeWebSockets();
  const socket = new KeepaliveSocket(URL, { WebSocket: FakeWebSocket, ...options });
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
