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
export function backoffDelay(failures: number, base: number, cap: number, random?: () => number): number;
/** The version of the heartbeat's wire format this module speaks (`"\x00wsk1 ping "`). */
export const PROTOCOL_VERSION: 1;
/** Close code of a socket the keepalive gave up on (1011 is not ours to send from a page). */
export const TIMEOUT_CODE: 4000;
/** Close reason of a socket whose heartbeat reply did not come within pingTimeout. */
export const PING_TIMEOUT_REASON: "keepalive ping timeout";
/** Close reason of an attempt whose opening handshake did not complete within connectTimeout. */
export const CONNECT_TIMEOUT_REASON: "keepalive connect timeout";
/** Close reason of a socket dropped by reconnect(). */
export const RECONNECT_REASON: "reconnect";
/** Close code of an attempt that never had a socket (the URL provider failed). */
export const NO_SOCKET_CODE: 1006;
/** The options' defaults, times in milliseconds (keepalive.js says why each is what it is). */
export const DEFAULTS: Readonly<{
    pingInterval: 20000;
    pingTimeout: 20000;
    connectTimeout: 20000;
    reconnect: true;
    reconnectDelay: 1000;
    reconnectDelayMax: 30000;
    maxRetries: number;
}>;
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
    /**
     * @param {number} pingInterval ms, ping to ping.
     * @param {number | null} pingTimeout ms to wait for a reply; null: forever.
     */
    constructor(pingInterval: number, pingTimeout: number | null);
    /** Milliseconds of the last round trip; null before the first reply. @type {number | null} */
    latency: number | null;
    /** When to poll next; null once timed out. @type {number | null} */
    wakeAt: number | null;
    /**
     * The connection opened at `now`: the first ping is due at once.
     * @param {number} now ms.
     */
    start(now: number): void;
    /**
     * What to do at `now`: wait (until `wakeAt`), send a ping, or time out.
     * @param {number} now ms.
     * @returns {Step}
     */
    poll(now: number): Step;
    /**
     * A reply with `token` arrived at `now`: its round trip in ms, or null if it answers nothing.
     * @param {string} token
     * @param {number} now ms.
     * @returns {number | null}
     */
    pong(token: string, now: number): number | null;
    #private;
}
/** `close`: a connection (or an attempt at one) ended. */
export class KeepaliveCloseEvent extends Event {
    /**
     * @param {number} code
     * @param {string} reason
     * @param {boolean} wasClean
     * @param {number | null} reconnectDelay
     */
    constructor(code: number, reason: string, wasClean: boolean, reconnectDelay: number | null);
    /** The WebSocket close code; 4000 when the keepalive gave up on the socket. */
    code: number;
    /** The WebSocket close reason ('' if none). */
    reason: string;
    /** Whether the closing handshake completed. */
    wasClean: boolean;
    /** Milliseconds until the next attempt, or null if none will be made. */
    reconnectDelay: number | null;
}
/** `error`: the current socket reported an error (a `close` follows). */
export class KeepaliveErrorEvent extends Event {
    /**
     * @param {unknown} error
     * @param {string} message
     */
    constructor(error: unknown, message: string);
    /** What the WebSocket implementation gave: an Error in Node, often nothing in browsers. */
    error: unknown;
    /** The error's message ('' if the implementation gave none). */
    message: string;
}
/** `latency`: a heartbeat reply arrived. */
export class KeepaliveLatencyEvent extends Event {
    /** @param {number} latency ms. */
    constructor(latency: number);
    /** Milliseconds of this round trip. */
    latency: number;
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
    static CONNECTING: number;
    /** readyState while a connection is open: 1. */
    static OPEN: number;
    /** readyState after close(), until the socket has closed: 2. */
    static CLOSING: number;
    /** readyState once closed for good: 3. */
    static CLOSED: number;
    /**
     * @param {UrlSource} url the ws:// or wss:// URL, or a function that gives it
     *     (or a promise of it), called before every attempt: a fresh token, another
     *     server.
     * @param {KeepaliveSocketOptions} [options] see KeepaliveSocketOptions (times in ms).
     */
    constructor(url: UrlSource, options?: KeepaliveSocketOptions);
    /** The URL of the current (or last) attempt; '' until a URL provider has given one. */
    get url(): string;
    /**
     * CONNECTING (also while waiting to reconnect), OPEN, CLOSING or CLOSED.
     * @returns {number}
     */
    get readyState(): number;
    /**
     * Milliseconds of the last heartbeat round trip; null before the first reply.
     * @returns {number | null}
     */
    get latency(): number | null;
    /** The subprotocol the server chose on the current socket; '' without one. */
    get protocol(): string;
    /** The extensions the server chose on the current socket; '' without one. */
    get extensions(): string;
    /** Bytes queued by send() on the current socket and not yet sent; 0 without one. */
    get bufferedAmount(): number;
    /** @param {string} value 'blob' or 'arraybuffer' (or what the implementation takes). */
    set binaryType(value: string);
    /** How binary messages arrive: 'blob' (the default) or 'arraybuffer'; applied to every socket. */
    get binaryType(): string;
    /**
     * Send an application message; throws InvalidStateError unless OPEN.
     * Nothing is queued while connecting or reconnecting, on purpose: a message
     * queued across a reconnection would reach a new connection (another
     * session, maybe another server) that has not yet been set up in `open`, and
     * the page could not tell which messages the old connection delivered.
     * @param {string | ArrayBufferLike | Blob | ArrayBufferView} data
     */
    send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
    /**
     * Close for good: no more heartbeats, timers or reconnection.  An open or
     * opening socket is closed with `code` and `reason` and `close` fires when it
     * has; while waiting to reconnect, the state becomes CLOSED at once.
     * @param {number} [code] Default 1000.
     * @param {string} [reason] Default ''.
     */
    close(code?: number, reason?: string): void;
    /**
     * Connect again now, with the backoff started over: the current socket, if
     * any, is dropped (closed with 1000 "reconnect", and `close` fires for it
     * with `reconnectDelay` 0). Also after close(), or once retries ran out.
     */
    reconnect(): void;
    #private;
}
/**
 * What KeepaliveSocket needs of a WebSocket: the browser's, Node's `ws` and
 * `undici`'s all have it.
 */
export type WebSocketLike = {
    readyState: number;
    binaryType: string;
    protocol: string;
    extensions: string;
    bufferedAmount: number;
    send: (data: any) => void;
    close: (code?: number, reason?: string) => void;
    addEventListener: (type: string, listener: (event: any) => void) => void;
    removeEventListener: (type: string, listener: (event: any) => void) => void;
};
/**
 * A WebSocket class: the browser's `WebSocket`, `ws`'s default export, `undici`'s `WebSocket`.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/**
 * The URL, or a URL provider: called before every attempt.
 */
export type UrlSource = string | URL | (() => string | URL | PromiseLike<string | URL>);
/**
 * The options of KeepaliveSocket, each optional: times in milliseconds.
 */
export type KeepaliveSocketOptions = {
    /**
     * ms between heartbeats, ping to ping;
     * null sends none (no latency, no timeout). Default 20000.
     */
    pingInterval?: number | null | undefined;
    /**
     * ms to wait for the reply before giving up
     * on the socket (close 4000); null never gives up. Default 20000.
     */
    pingTimeout?: number | null | undefined;
    /**
     * ms an opening handshake (and a URL
     * provider) may take before the attempt is abandoned (close 4000); null waits
     * for the browser. Default 20000.
     */
    connectTimeout?: number | null | undefined;
    /**
     * reconnect after every close not asked for with
     * close(). Default true.
     */
    reconnect?: boolean | undefined;
    /**
     * ms, the backoff's base. Default 1000.
     */
    reconnectDelay?: number | undefined;
    /**
     * ms, the backoff's cap. Default 30000.
     */
    reconnectDelayMax?: number | undefined;
    /**
     * attempts after a connection is lost (or the first
     * fails) before giving up for good, counted since the last connection the
     * server answered on. Default Infinity.
     */
    maxRetries?: number | undefined;
    /**
     * WebSocket subprotocols.
     */
    protocols?: string | string[] | undefined;
    /**
     * the WebSocket constructor. Default
     * globalThis.WebSocket.
     */
    WebSocket?: WebSocketConstructor | undefined;
};
/**
 * KeepaliveSocketOptions validated, with the defaults filled in (internal).
 */
export type Settings = {
    pingInterval: number | null;
    pingTimeout: number | null;
    connectTimeout: number | null;
    reconnect: boolean;
    reconnectDelay: number;
    reconnectDelayMax: number;
    maxRetries: number;
    protocols: string | string[] | undefined;
    WebSocket: WebSocketConstructor;
};
/**
 * What Heartbeat.poll() says to do.
 */
export type Step = {
    action: "wait";
} | {
    action: "ping";
    token: string;
} | {
    action: "timeout";
    waited: number;
};
