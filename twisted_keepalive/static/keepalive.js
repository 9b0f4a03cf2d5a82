// keepalive.js: heartbeat, latency and reconnect for browser WebSockets.
//
// Browsers answer a server's WebSocket Pings, but give pages no way to send
// one: a page never learns that its server died (TCP may take minutes or hours
// to tell), so its reconnect logic never runs.  KeepaliveSocket wraps a
// WebSocket and sends an application-level heartbeat that a twisted-keepalive
// server (KeepaliveMixin with browser_heartbeat = True, or `twistd
// wskeepalive`) answers at once.  Dependency-free ES module; works in browsers
// and in Node (pass `WebSocket` where there is no global one).
//
// Wire format, version 1 (twisted_keepalive/_browser.py is the server's half):
// the page sends the text message "\x00wsk1 ping " + token (token: 1-64 chars
// of [A-Za-z0-9_-]); the server answers "\x00wsk1 pong " + token.  Text
// messages starting with "\x00wsk" are reserved for the heartbeat.
//
// Timers: every decision is taken from performance.now() (monotonic), never
// from how often a timer fired.  Browsers throttle timers in hidden tabs (to
// once a second, and Chrome to once a minute for chained timers after five
// minutes hidden), so a setInterval-driven heartbeat would silently ping less
// often and judge deadlines late.  Here a single setTimeout is re-armed for the
// next deadline each time it fires, a timer that fires late only delays the
// decision, and the page becoming visible again wakes an overdue timer at once.
//
// Layout: Heartbeat and backoffDelay() are plain state and arithmetic (times in
// milliseconds in, actions out); KeepaliveSocket is the adapter that owns the
// WebSocket and the one timer.

// Types, for `tsc --checkJs` and the generated keepalive.d.ts:

/**
 * What KeepaliveSocket needs of a WebSocket: the browser's, Node's `ws` and
 * `undici`'s all have it.
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {string} binaryType
 * @property {string} protocol
 * @property {string} extensions
 * @property {number} bufferedAmount
 * @property {(data: any) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {(type: string, listener: (event: any) => void) => void} addEventListener
 * @property {(type: string, listener: (event: any) => void) => void} removeEventListener
 */
/**
 * A WebSocket class: the browser's `WebSocket`, `ws`'s default export, `undici`'s `WebSocket`.
 * @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketConstructor
 */
/**
 * The URL, or a URL provider: called before every attempt.
 * @typedef {string | URL | (() => string | URL | PromiseLike<string | URL>)} UrlSource
 */
/**
 * The options of KeepaliveSocket, each optional: times in milliseconds.
 * @typedef {object} KeepaliveSocketOptions
 * @property {number | null} [pingInterval] ms between heartbeats, ping to ping;
 *     null sends none (no latency, no timeout). Default 20000.
 * @property {number | null} [pingTimeout] ms to wait for the reply before giving up
 *     on the socket (close 4000); null never gives up. Default 20000.
 * @property {number | null} [connectTimeout] ms an opening handshake (and a URL
 *     provider) may take before the attempt is abandoned (close 4000); null waits
 *     for the browser. Default 20000.
 * @property {boolean} [reconnect] reconnect after every close not asked for with
 *     close(). Default true.
 * @property {number} [reconnectDelay] ms, the backoff's base. Default 1000.
 * @property {number} [reconnectDelayMax] ms, the backoff's cap. Default 30000.
 * @property {number} [maxRetries] attempts after a connection is lost (or the first
 *     fails) before giving up for good, counted since the last connection the
 *     server answered on. Default Infinity.
 * @property {string | string[]} [protocols] WebSocket subprotocols.
 * @property {WebSocketConstructor} [WebSocket] the WebSocket constructor. Default
 *     globalThis.WebSocket.
 */
/**
 * KeepaliveSocketOptions validated, with the defaults filled in (internal).
 * @typedef {object} Settings
 * @property {number | null} pingInterval
 * @property {number | null} pingTimeout
 * @property {number | null} connectTimeout
 * @property {boolean} reconnect
 * @property {number} reconnectDelay
 * @property {number} reconnectDelayMax
 * @property {number} maxRetries
 * @property {string | string[] | undefined} protocols
 * @property {WebSocketConstructor} WebSocket
 */
/**
 * What Heartbeat.poll() says to do.
 * @typedef {{action: 'wait'} | {action: 'ping', token: string} | {action: 'timeout', waited: number}} Step
 */

const RESERVED_PREFIX = '\x00wsk';
const PING_PREFIX = '\x00wsk1 ping ';
const PONG_PREFIX = '\x00wsk1 pong ';
/** The version of the heartbeat's wire format this module speaks (`"\x00wsk1 ping "`). */
export const PROTOCOL_VERSION = 1;

/** Close code of a socket the keepalive gave up on (1011 is not ours to send from a page). */
export const TIMEOUT_CODE = 4000;
/** Close reason of a socket whose heartbeat reply did not come within pingTimeout. */
export const PING_TIMEOUT_REASON = 'keepalive ping timeout';
/** Close reason of an attempt whose opening handshake did not complete within connectTimeout. */
export const CONNECT_TIMEOUT_REASON = 'keepalive connect timeout';
/** Close reason of a socket dropped by reconnect(). */
export const RECONNECT_REASON = 'reconnect';
/** Close code of an attempt that never had a socket (the URL provider failed). */
export const NO_SOCKET_CODE = 1006;

// Why these defaults:
// - pingInterval 20 s is well under the 30-120 s after which proxies and load
//   balancers cut idle connections; pingTimeout 20 s is far beyond any healthy
//   round trip, even on a mobile link.  Both match the server's defaults, so a
//   dead server is noticed within 40 s.
// - connectTimeout 20 s: an opening handshake to a frozen or black-holed server
//   would otherwise hang for the operating system's TCP timeout (minutes).
// - reconnectDelay 1 s, reconnectDelayMax 30 s, full jitter: after a server
//   restart, its clients come back spread over one second rather than all at
//   once, then over 2, 4, 8, 16 and 30 s while it stays down; the cap bounds
//   how long a user waits once it is back.  Jitter keeps spreading them at the
//   cap (a fixed cap with "± some percent" puts every client on one beat).
// - maxRetries Infinity: a page that stops trying leaves its user stranded
//   once the server is back; the backoff already keeps retries cheap.
/** The options' defaults, times in milliseconds (keepalive.js says why each is what it is). */
export const DEFAULTS = Object.freeze({
  pingInterval: 20000,
  pingTimeout: 20000,
  connectTimeout: 20000,
  reconnect: true,
  reconnectDelay: 1000,
  reconnectDelayMax: 30000,
  maxRetries: Infinity,
});

// Listens for `error` on every socket the module gives up on, for good: Node's
// `ws` emits `error` on an EventEmitter after close() of a socket still
// connecting, and an EventEmitter's `error` with no listener ends the process.
// It holds no reference to any KeepaliveSocket.
const ignore = () => {};

// setTimeout fires at once for delays above 2^31 - 1 ms; waking early is
// harmless, since every decision is re-taken from the clock.
const MAX_TIMER_DELAY = 2 ** 31 - 1;

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

/**
 * Capped exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(cap, base * 2^failures)) milliseconds.
 *
 * @param {number} failures consecutive attempts since the last healthy
 *     connection (0 for the first retry).
 * @param {number} base milliseconds.
 * @param {number} cap milliseconds.
 * @param {() => number} random uniform in [0, 1).
 */
export function backoffDelay(failures, base, cap, random = Math.random) {
  return random() * Math.min(cap, base * 2 ** failures);
}

/**
 * The heartbeat of one connection as plain state: no timers, no socket.
 * Times are milliseconds on one monotonic clock.
 *
 * Call poll(now) when `wakeAt` has come (or at any time: it decides from
 * `now` alone) and do what it says: send a ping with the given token, fail the
 * connection ("timeout"), or nothing ("wait").  Call pong(token, now) for each
 * heartbeat reply.  One ping is in flight at a time; pings go out Ping to Ping
 * every pingInterval, or as soon as a late reply arrives.
 */
export class Heartbeat {
  /** Milliseconds of the last round trip; null before the first reply. @type {number | null} */
  latency = null;
  /** When to poll next; null once timed out. @type {number | null} */
  wakeAt = null;

  /** @type {number} */
  #pingInterval;
  /** @type {number | null} */
  #pingTimeout;
  #nextPingAt = 0;
  /** @type {{token: string, sentAt: number, deadline: number | null, rechecking: boolean} | null} */
  #pending = null;
  #sequence = 0;

  /**
   * @param {number} pingInterval ms, ping to ping.
   * @param {number | null} pingTimeout ms to wait for a reply; null: forever.
   */
  constructor(pingInterval, pingTimeout) {
    this.#pingInterval = pingInterval;
    this.#pingTimeout = pingTimeout;
  }

  /**
   * The connection opened at `now`: the first ping is due at once.
   * @param {number} now ms.
   */
  start(now) {
    // At once, not one interval later: latency is known within one round trip,
    // and the reconnect backoff resets only once the server has answered.
    this.#nextPingAt = now;
    this.wakeAt = now;
  }

  /**
   * What to do at `now`: wait (until `wakeAt`), send a ping, or time out.
   * @param {number} now ms.
   * @returns {Step}
   */
  poll(now) {
    const pending = this.#pending;
    if (pending !== null && pending.deadline !== null) {
      if (now < pending.deadline) {
        this.wakeAt = pending.deadline;
        return { action: 'wait' };
      }
      if (!pending.rechecking) {
        // A reply that arrived while the page was busy (or throttled) may be
        // queued behind this timer: give the event loop one turn to deliver it
        // before blaming the server for our own stall.
        pending.rechecking = true;
        this.wakeAt = now;
        return { action: 'wait' };
      }
      this.wakeAt = null;
      return { action: 'timeout', waited: now - pending.sentAt };
    }
    if (now < this.#nextPingAt) {
      this.wakeAt = this.#nextPingAt;
      return { action: 'wait' };
    }
    // Without a ping timeout, pings only keep the connection busy: a new one
    // replaces one that was never answered.
    this.#sequence += 1;
    const token = this.#sequence.toString(36);
    const deadline = this.#pingTimeout === null ? null : now + this.#pingTimeout;
    this.#pending = { token, sentAt: now, deadline, rechecking: false };
    this.#nextPingAt = now + this.#pingInterval;
    this.wakeAt = deadline ?? this.#nextPingAt;
    return { action: 'ping', token };
  }

  /**
   * A reply with `token` arrived at `now`: its round trip in ms, or null if it answers nothing.
   * @param {string} token
   * @param {number} now ms.
   * @returns {number | null}
   */
  pong(token, now) {
    const pending = this.#pending;
    if (pending === null || token !== pending.token) return null;
    this.#pending = null;
    this.latency = now - pending.sentAt;
    // The next ping stays one interval after this one, or goes at once if the
    // reply came later than that.
    this.wakeAt = this.#nextPingAt;
    return this.latency;
  }
}

/** `close`: a connection (or an attempt at one) ended. */
export class KeepaliveCloseEvent extends Event {
  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} wasClean
   * @param {number | null} reconnectDelay
   */
  constructor(code, reason, wasClean, reconnectDelay) {
    super('close');
    /** The WebSocket close code; 4000 when the keepalive gave up on the socket. */
    this.code = code;
    /** The WebSocket close reason ('' if none). */
    this.reason = reason;
    /** Whether the closing handshake completed. */
    this.wasClean = wasClean;
    /** Milliseconds until the next attempt, or null if none will be made. */
    this.reconnectDelay = reconnectDelay;
  }
}

/** `error`: the current socket reported an error (a `close` follows). */
export class KeepaliveErrorEvent extends Event {
  /**
   * @param {unknown} error
   * @param {string} message
   */
  constructor(error, message) {
    super('error');
    /** What the WebSocket implementation gave: an Error in Node, often nothing in browsers. */
    this.error = error;
    /** The error's message ('' if the implementation gave none). */
    this.message = message;
  }
}

/** `latency`: a heartbeat reply arrived. */
export class KeepaliveLatencyEvent extends Event {
  /** @param {number} latency ms. */
  constructor(latency) {
    super('latency');
    /** Milliseconds of this round trip. */
    this.latency = latency;
  }
}

/**
 * @template {boolean} N
 * @param {string} name
 * @param {unknown} value
 * @param {N} allowNull
 * @returns {N extends true ? number | null : number}
 */
function milliseconds(name, value, allowNull) {
  return /** @type {any} */ (checkedMilliseconds(name, value, allowNull));
}

/**
 * @param {string} name
 * @param {unknown} value
 * @param {boolean} allowNull
 * @returns {number | null}
 */
function checkedMilliseconds(name, value, allowNull) {
  if (value === null && allowNull) return null;
  const expected = `a positive number of milliseconds${allowNull ? ' or null' : ''}`;
  if (typeof value !== 'number') throw new TypeError(`${name} must be ${expected}, not ${typeof value} ${String(value)}`);
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`${name} must be ${expected}, not ${value}`);
  return value;
}

/**
 * @param {KeepaliveSocketOptions} options
 * @returns {Settings}
 */
function validated(options) {
  const known = [...Object.keys(DEFAULTS), 'protocols', 'WebSocket'];
  for (const name of Object.keys(options)) {
    if (!known.includes(name)) {
      throw new TypeError(`unknown KeepaliveSocket option ${JSON.stringify(name)}; expected one of ${known.join(', ')}`);
    }
  }
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  /** @type {Record<string, any>} */
  const merged = { ...DEFAULTS, WebSocket: globalThis.WebSocket, ...given };
  const settings = {
    pingInterval: milliseconds('pingInterval', merged.pingInterval, true),
    pingTimeout: milliseconds('pingTimeout', merged.pingTimeout, true),
    connectTimeout: milliseconds('connectTimeout', merged.connectTimeout, true),
    reconnectDelay: milliseconds('reconnectDelay', merged.reconnectDelay, false),
    reconnectDelayMax: milliseconds('reconnectDelayMax', merged.reconnectDelayMax, false),
    reconnect: merged.reconnect,
    maxRetries: merged.maxRetries,
    protocols: merged.protocols,
    WebSocket: merged.WebSocket,
  };
  if (typeof settings.reconnect !== 'boolean') throw new TypeError(`reconnect must be true or false, not ${String(settings.reconnect)}`);
  const { maxRetries } = settings;
  if (typeof maxRetries !== 'number' || !(Number.isInteger(maxRetries) || maxRetries === Infinity) || maxRetries < 0) {
    throw new RangeError(`maxRetries must be a whole number of attempts (0 or more) or Infinity, not ${String(maxRetries)}`);
  }
  if (settings.reconnectDelayMax < settings.reconnectDelay) {
    throw new RangeError(`reconnectDelayMax (${settings.reconnectDelayMax}) must not be less than reconnectDelay (${settings.reconnectDelay})`);
  }
  if (typeof settings.WebSocket !== 'function') {
    throw new TypeError('no WebSocket constructor here: pass one as the WebSocket option');
  }
  return settings;
}

/**
 * A WebSocket with a heartbeat, latency and automatic reconnection.
 *
 *     const socket = new KeepaliveSocket('wss://example.com/feed');
 *     socket.addEventListener('message', (event) => show(event.data));
 *     socket.addEventListener('latency', () => console.log(socket.latency, 'ms'));
 *     socket.addEventListener('close', (event) => console.log(event.code, event.reason));
 *
 * Events: `open` (every time a connection opens, reconnections included),
 * `message` (application messages only, `data` untouched; heartbeat replies
 * never surface), `latency` (KeepaliveLatencyEvent), `error`
 * (KeepaliveErrorEvent: the current socket's error, or a URL provider's; a
 * `close` follows), `close` (KeepaliveCloseEvent: every time a connection or
 * an attempt ends; its `reconnectDelay` says whether and when the next
 * attempt comes).
 */
export class KeepaliveSocket extends EventTarget {
  /** readyState while connecting, and while waiting to reconnect: 0. */
  static CONNECTING = CONNECTING;
  /** readyState while a connection is open: 1. */
  static OPEN = OPEN;
  /** readyState after close(), until the socket has closed: 2. */
  static CLOSING = CLOSING;
  /** readyState once closed for good: 3. */
  static CLOSED = CLOSED;

  /** @type {string | (() => string | URL | PromiseLike<string | URL>)} */
  #urlSource; // a string, or a function called for every attempt
  #url = '';
  #attempt = 0; // numbers attempts, so that a late URL from the provider is dropped
  /** @type {Settings} */
  #settings;
  #binaryType = 'blob';
  #state = CONNECTING;
  #stopped = false;
  /** @type {number | null} */
  #latency = null; // kept across reconnections: the last round trip measured
  #failures = 0; // attempts since the last connection the server answered on
  /** @type {WebSocketLike | null} */
  #ws = null;
  /** @type {Record<string, (event: any) => void> | null} */
  #listeners = null; // on #ws, by event type: removed one by one when it is let go
  /** @type {Heartbeat | null} */
  #heartbeat = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null; // the one timer: connect timeout, heartbeat, or reconnect wait
  /** @type {number | null} */
  #timerAt = null;
  /** @type {(() => void) | null} */
  #timerAction = null;
  #onVisible = () => {
    if (globalThis.document?.visibilityState !== 'hidden') this.#wake();
  };

  /**
   * @param {UrlSource} url the ws:// or wss:// URL, or a function that gives it
   *     (or a promise of it), called before every attempt: a fresh token, another
   *     server.
   * @param {KeepaliveSocketOptions} [options] see KeepaliveSocketOptions (times in ms).
   */
  constructor(url, options = {}) {
    super();
    this.#urlSource = typeof url === 'function' ? url : String(url);
    this.#settings = validated(options);
    this.#connect();
    globalThis.document?.addEventListener?.('visibilitychange', this.#onVisible);
  }

  /** The URL of the current (or last) attempt; '' until a URL provider has given one. */
  get url() {
    return this.#url;
  }

  /**
   * CONNECTING (also while waiting to reconnect), OPEN, CLOSING or CLOSED.
   * @returns {number}
   */
  get readyState() {
    return this.#state;
  }

  /**
   * Milliseconds of the last heartbeat round trip; null before the first reply.
   * @returns {number | null}
   */
  get latency() {
    return this.#latency;
  }

  /** The subprotocol the server chose on the current socket; '' without one. */
  get protocol() {
    return this.#ws?.protocol ?? '';
  }

  /** The extensions the server chose on the current socket; '' without one. */
  get extensions() {
    return this.#ws?.extensions ?? '';
  }

  /** Bytes queued by send() on the current socket and not yet sent; 0 without one. */
  get bufferedAmount() {
    return this.#ws?.bufferedAmount ?? 0;
  }

  /** How binary messages arrive: 'blob' (the default) or 'arraybuffer'; applied to every socket. */
  get binaryType() {
    return this.#binaryType;
  }

  /** @param {string} value 'blob' or 'arraybuffer' (or what the implementation takes). */
  set binaryType(value) {
    this.#binaryType = value;
    if (this.#ws !== null) this.#ws.binaryType = value;
  }

  /**
   * Send an application message; throws InvalidStateError unless OPEN.
   * Nothing is queued while connecting or reconnecting, on purpose: a message
   * queued across a reconnection would reach a new connection (another
   * session, maybe another server) that has not yet been set up in `open`, and
   * the page could not tell which messages the old connection delivered.
   * @param {string | ArrayBufferLike | Blob | ArrayBufferView} data
   */
  send(data) {
    if (this.#state !== OPEN) {
      const why = this.#stopped ? 'closed' : 'connecting or reconnecting; send from an open listener';
      throw new DOMException(
        `KeepaliveSocket is not open (readyState ${this.#state}: ${why}); messages are not queued`,
        'InvalidStateError',
      );
    }
    if (this.#settings.pingInterval !== null && typeof data === 'string' && data.startsWith(RESERVED_PREFIX)) {
      throw new TypeError('text messages starting with "\\x00wsk" are reserved for the keepalive heartbeat');
    }
    /** @type {WebSocketLike} */ (this.#ws).send(data);
  }

  /**
   * Close for good: no more heartbeats, timers or reconnection.  An open or
   * opening socket is closed with `code` and `reason` and `close` fires when it
   * has; while waiting to reconnect, the state becomes CLOSED at once.
   * @param {number} [code] Default 1000.
   * @param {string} [reason] Default ''.
   */
  close(code = 1000, reason = '') {
    if (this.#stopped) return;
    if (this.#ws !== null) this.#ws.close(code, reason); // throws on a code pages may not send
    this.#stopped = true;
    this.#disarm();
    this.#heartbeat = null;
    globalThis.document?.removeEventListener?.('visibilitychange', this.#onVisible);
    this.#state = this.#ws !== null ? CLOSING : CLOSED;
  }

  /**
   * Connect again now, with the backoff started over: the current socket, if
   * any, is dropped (closed with 1000 "reconnect", and `close` fires for it
   * with `reconnectDelay` 0). Also after close(), or once retries ran out.
   */
  reconnect() {
    const ws = this.#ws;
    const dropped = ws !== null && !this.#stopped;
    this.#release();
    if (ws !== null) {
      try {
        ws.close(1000, RECONNECT_REASON);
      } catch {
        // Already closing: forgotten all the same.
      }
    }
    if (this.#stopped) {
      this.#stopped = false;
      globalThis.document?.addEventListener?.('visibilitychange', this.#onVisible);
    }
    this.#failures = 0;
    this.#connect();
    if (dropped) this.dispatchEvent(new KeepaliveCloseEvent(1000, RECONNECT_REASON, false, 0));
  }

  // -- the connection ---------------------------------------------------------

  #connect() {
    const { connectTimeout } = this.#settings;
    this.#attempt += 1;
    this.#state = CONNECTING;
    // The connect timeout covers a URL provider's wait too.
    if (connectTimeout !== null) {
      this.#arm(performance.now() + connectTimeout, () => this.#abandon(CONNECT_TIMEOUT_REASON));
    } else {
      this.#disarm();
    }
    const source = this.#urlSource;
    if (typeof source !== 'function') {
      this.#open(source);
      return;
    }
    // Called a microtask later, even when it answers at once: what the
    // attempt reports (error, close) then reaches listeners added right after
    // the constructor.
    const attempt = this.#attempt;
    const stale = () => attempt !== this.#attempt || this.#stopped;
    Promise.resolve()
      .then(() => (stale() ? null : source()))
      .then(
        (url) => {
          if (stale()) return;
          try {
            this.#open(String(url));
          } catch (error) {
            this.#unreachable(error); // new WebSocket() refused the URL
          }
        },
        (error) => {
          if (!stale()) this.#unreachable(error);
        },
      );
  }

  /**
   * The attempt ends before it had a socket: report why, then back off as for any failure.
   * @param {unknown} error
   */
  #unreachable(error) {
    const attempt = this.#attempt;
    const message = String(/** @type {any} */ (error)?.message ?? error);
    this.dispatchEvent(new KeepaliveErrorEvent(error, message));
    if (this.#stopped || attempt !== this.#attempt) return; // a listener closed or reconnected
    this.#ended(NO_SOCKET_CODE, `no URL: ${message}`, false);
  }

  /** @param {string} url */
  #open(url) {
    const { WebSocket, protocols } = this.#settings;
    this.#url = url;
    const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols);
    ws.binaryType = this.#binaryType;
    // Removed explicitly in #release(), not through an AbortSignal: `ws` and
    // older browsers ignore addEventListener's {signal}, and a forgotten
    // socket's late `close` would then end the current connection. Each
    // listener also checks that its socket is still the current one.
    /** @type {(listener: (event: any) => void) => (event: any) => void} */
    const current = (listener) => (event) => {
      if (this.#ws === ws) listener(event);
    };
    const listeners = {
      open: current(() => this.#opened()),
      message: current((event) => this.#received(event)),
      close: current((event) => this.#ended(event.code, event.reason, event.wasClean)),
      error: current((event) => this.#failed(event)),
    };
    for (const [type, listener] of Object.entries(listeners)) ws.addEventListener(type, listener);
    ws.addEventListener('error', ignore);
    this.#ws = ws;
    this.#listeners = listeners;
  }

  #opened() {
    this.#state = OPEN;
    const { pingInterval, pingTimeout } = this.#settings;
    if (pingInterval === null) {
      this.#failures = 0;
      this.#disarm();
    } else {
      this.#heartbeat = new Heartbeat(pingInterval, pingTimeout);
      this.#heartbeat.start(performance.now());
      this.#beat();
    }
    this.dispatchEvent(new Event('open'));
  }

  #beat() {
    const heartbeat = /** @type {Heartbeat} */ (this.#heartbeat); // only while open
    const step = heartbeat.poll(performance.now());
    if (step.action === 'timeout') {
      this.#abandon(PING_TIMEOUT_REASON);
      return;
    }
    if (step.action === 'ping') /** @type {WebSocketLike} */ (this.#ws).send(PING_PREFIX + step.token);
    this.#arm(heartbeat.wakeAt, () => this.#beat());
  }

  /** @param {MessageEvent} event */
  #received(event) {
    const { data } = event;
    if (this.#settings.pingInterval !== null && typeof data === 'string' && data.startsWith(RESERVED_PREFIX)) {
      // Reserved: a reply is handled here, anything else is dropped.
      if (this.#heartbeat !== null && data.startsWith(PONG_PREFIX)) {
        const latency = this.#heartbeat.pong(data.slice(PONG_PREFIX.length), performance.now());
        if (latency !== null) {
          this.#latency = latency;
          this.#failures = 0; // the server answers: a healthy connection
          this.#beat();
          this.dispatchEvent(new KeepaliveLatencyEvent(latency));
        }
      }
      return;
    }
    this.dispatchEvent(
      new MessageEvent('message', { data, origin: event.origin, lastEventId: event.lastEventId }),
    );
  }

  /**
   * The keepalive gives up on the socket: `close` now, without waiting for TCP.
   * @param {string} reason
   */
  #abandon(reason) {
    const ws = this.#ws;
    this.#release();
    try {
      ws?.close(TIMEOUT_CODE, reason); // none yet if a URL provider is still answering
    } catch {
      // Already closing: it is detached and forgotten all the same.
    }
    this.#ended(TIMEOUT_CODE, reason, false);
  }

  /**
   * The current socket reported an error; its `close` comes next.
   * @param {any} event what the implementation dispatched
   */
  #failed(event) {
    if (this.#stopped) return; // the error of our own close(): nothing to report
    this.dispatchEvent(new KeepaliveErrorEvent(event?.error ?? null, String(event?.message ?? '')));
  }

  #release() {
    const ws = this.#ws;
    const listeners = this.#listeners;
    if (ws !== null && listeners !== null) {
      for (const [type, listener] of Object.entries(listeners)) ws.removeEventListener(type, listener);
    }
    this.#listeners = null;
    this.#ws = null;
    this.#attempt += 1; // a URL provider still answering answers nobody
    this.#heartbeat = null;
    this.#disarm();
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} wasClean
   */
  #ended(code, reason, wasClean) {
    this.#release();
    let delay = null;
    const { reconnect, maxRetries } = this.#settings;
    if (reconnect && !this.#stopped && this.#failures < maxRetries) {
      const { reconnectDelay, reconnectDelayMax } = this.#settings;
      delay = backoffDelay(this.#failures, reconnectDelay, reconnectDelayMax);
      this.#failures += 1;
      this.#state = CONNECTING;
      this.#arm(performance.now() + delay, () => this.#connect());
    } else {
      this.#stopped = true;
      this.#state = CLOSED;
      globalThis.document?.removeEventListener?.('visibilitychange', this.#onVisible);
    }
    // After the reconnect is scheduled, so that a listener's close() cancels it.
    this.dispatchEvent(new KeepaliveCloseEvent(code, reason, wasClean, delay));
  }

  // -- the one timer ------------------------------------------------------------

  /**
   * @param {number | null} at ms on performance.now()'s clock; null: no timer.
   * @param {() => void} action
   */
  #arm(at, action) {
    this.#disarm();
    if (at === null) return;
    this.#timerAt = at;
    this.#timerAction = action;
    const delay = Math.min(MAX_TIMER_DELAY, Math.max(0, at - performance.now()));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (performance.now() >= at) {
        this.#timerAt = null;
        this.#timerAction = null;
        action();
      } else {
        this.#arm(at, action); // woke early: a clamped or imprecise timer
      }
    }, delay);
  }

  #disarm() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = null;
    this.#timerAction = null;
  }

  /** The page is visible again: run a timer that throttling kept from firing on time. */
  #wake() {
    const action = this.#timerAction;
    const at = this.#timerAt;
    if (action !== null && at !== null && performance.now() >= at) {
      this.#disarm();
      action();
    }
  }
}
