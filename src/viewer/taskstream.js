// taskstream.js: the client of taskstream's event streams, for browsers and Node 20+.
//
// One dependency-free ES module with JSDoc types and no build step. The server serves it at
// /assets/taskstream.js; Node imports this file from the repository (or a copy fetched from a
// server). It reads the stream with fetch() and its own parser of the event-stream format
// rather than EventSource, because EventSource gives up for good on any answer but 200 without
// saying which (a 503 while an instance drains, a 401 when a token expires), cannot send an
// Authorization header, and has no listener for event types nobody named.
//
// What it does:
// - delivers every event, whatever its type, to one callback with its task, id, type and parsed
//   data (and to handlers of one type, if any);
// - resumes from the last event's id (sent as Last-Event-ID) after a network error, a dropped
//   stream, a server restart, a 5xx or 429, after a jittered exponential wait that honours the
//   server's `retry:` and `retry-after`, so that clients never come back in lockstep;
// - reports 401 and 403 as the state `auth`: a refreshToken callback may supply a new token, and
//   the stream resumes from the same cursor; a refused new token is not retried again;
// - stops at `complete` (and at a 204, which says the task had already completed);
// - exposes its state and close().
//
// A stream follows one task (`task`), or several over one connection (`tasks`: the multi-task
// stream, `/events/stream?task=a&task=b`). Either way every event names its task and carries
// the single-task data: the multi-task frame's `{"task", "data"}` wrapping is undone here, and
// its `task_complete` (one task ended) arrives with `data: {status}`.

/** The wait before reconnecting until the server sends `retry:`, in milliseconds. */
const DEFAULT_RETRY_MS = 1000;

/** The shortest base of the backoff, whatever `retry:` says: a server that drops every stream at
 * once must not be hammered in a tight loop. */
const MIN_RETRY_MS = 100;

/** The longest wait of the exponential backoff (a `retry-after` may ask for longer). */
const DEFAULT_MAX_DELAY_MS = 30000;

/**
 * A stream that receives nothing at all (not even the server's keep-alive comment, every 15 s
 * by default) for this long is taken as dead and reopened: a connection whose peer vanished
 * without a word (a laptop that slept, a network that changed) would otherwise hang forever.
 */
const DEFAULT_IDLE_TIMEOUT_MS = 45000;

/** The longest delay setTimeout honours; longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

// === The event-stream parser ===

/**
 * One event as the event-stream format dispatches it.
 * @typedef {object} ParsedEvent
 * @property {string} id the last event ID when it was dispatched
 * @property {string} type its type (`message` when the frame named none)
 * @property {string} data its data lines, joined with LF
 */

/**
 * What the parser reports besides events.
 * @typedef {object} ParserHandlers
 * @property {(event: ParsedEvent) => void} onEvent an event was dispatched
 * @property {(millis: number) => void} [onRetry] a valid `retry:` field
 * @property {(text: string) => void} [onComment] a comment line (its text after the colon)
 */

/**
 * An incremental parser of the event-stream format, as WHATWG HTML specifies it ("Server-sent
 * events", parsing an event stream): UTF-8 decoded as a stream (a leading BOM is dropped, a
 * character split across chunks is joined), lines end at CR, LF or CRLF (also when the CR and
 * the LF arrive in different chunks), one space after the colon is dropped, `data` lines are
 * joined with LF, an `id` that contains NUL is ignored, `retry` counts only when it is ASCII
 * digits, comments start with a colon, unknown fields are ignored, and a block without data
 * dispatches nothing. The id persists from event to event, as EventSource's last event ID does.
 */
export class EventStreamParser {
  /** Decodes the bytes as one UTF-8 stream. */
  #decoder = new TextDecoder('utf-8');
  /** The text of the line read so far. */
  #line = '';
  /** Whether the last character seen was a CR, whose LF may start the next chunk. */
  #afterCR = false;
  /** The data buffer: each `data` line followed by LF. */
  #data = '';
  /** The event type buffer. */
  #type = '';
  /** The last event ID buffer. */
  #lastId;
  /** @type {ParserHandlers} */
  #handlers;

  /**
   * @param {ParserHandlers} handlers
   * @param {string} [lastEventId] the id that events carry until the stream sets one
   */
  constructor(handlers, lastEventId = '') {
    this.#handlers = handlers;
    this.#lastId = lastEventId;
  }

  /** The last event ID: what a reconnect resumes after. */
  get lastEventId() {
    return this.#lastId;
  }

  /**
   * Feeds the next bytes of the stream, dispatching the events they complete.
   * @param {Uint8Array} bytes
   */
  feed(bytes) {
    const text = this.#decoder.decode(bytes, { stream: true });
    if (text === '') return;
    let start = 0;
    if (this.#afterCR) {
      this.#afterCR = false;
      if (text.charCodeAt(0) === 0x0a) start = 1; // the LF of a CRLF split across chunks
    }
    for (let i = start; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      if (c !== 0x0a && c !== 0x0d) continue;
      const line = this.#line + text.slice(start, i);
      this.#line = '';
      if (c === 0x0d) {
        if (i + 1 === text.length) this.#afterCR = true;
        else if (text.charCodeAt(i + 1) === 0x0a) i += 1;
      }
      start = i + 1;
      this.#processLine(line);
    }
    this.#line += text.slice(start);
  }

  /** @param {string} line */
  #processLine(line) {
    if (line === '') {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 0x3a) {
      this.#handlers.onComment?.(line.slice(1));
      return;
    }
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(line.charCodeAt(colon + 1) === 0x20 ? colon + 2 : colon + 1);
    }
    switch (field) {
      case 'event':
        this.#type = value;
        break;
      case 'data':
        this.#data += value + '\n';
        break;
      case 'id':
        if (!value.includes('\0')) this.#lastId = value;
        break;
      case 'retry':
        if (/^[0-9]+$/.test(value)) this.#handlers.onRetry?.(Number(value));
        break;
      default:
      // Any other field is ignored.
    }
  }

  #dispatch() {
    if (this.#data === '') {
      this.#type = '';
      return;
    }
    const event = {
      id: this.#lastId,
      type: this.#type === '' ? 'message' : this.#type,
      data: this.#data.slice(0, -1),
    };
    this.#data = '';
    this.#type = '';
    this.#handlers.onEvent(event);
  }
}

// === Waiting between attempts ===

/**
 * How long to wait before the next attempt: a random time between half and all of
 * min(maxDelay, retry × 2^(failures − 1)) (retry at least 100 ms), so that clients that failed
 * together spread out;
 * and never less than the server's `retry-after`, plus up to half of it at random, so that a
 * server that asked everyone to wait 2 s does not get everyone back in the same instant.
 * @param {number} failures consecutive failed attempts, from 1
 * @param {number} retryMs the base wait: the server's `retry:`, or 1 s
 * @param {number} maxDelayMs the cap of the exponential part
 * @param {number | undefined} retryAfterMs the server's `retry-after`, if it sent one
 * @param {() => number} [random] a number in [0, 1)
 * @returns {number} milliseconds
 */
export function reconnectDelay(failures, retryMs, maxDelayMs, retryAfterMs, random = Math.random) {
  const base = Math.max(MIN_RETRY_MS, retryMs);
  const exponential = Math.min(maxDelayMs, base * 2 ** Math.min(failures - 1, 30));
  let delay = exponential / 2 + (random() * exponential) / 2;
  if (retryAfterMs !== undefined) delay = Math.max(delay, retryAfterMs * (1 + random() / 2));
  return Math.min(MAX_TIMER_MS, Math.round(delay));
}

/**
 * A `retry-after` header in milliseconds (seconds, or an HTTP date), if it has a valid one.
 * @param {string | null} value
 * @returns {number | undefined}
 */
function retryAfterMs(value) {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^[0-9]+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

// === The client ===

/**
 * One event of a task's stream.
 * @typedef {object} TaskEvent
 * @property {string | null} task the task it belongs to (`null` for the final `complete` of
 *   a stream of several tasks)
 * @property {string} id its cursor: a resume starts right after it
 * @property {string} type its type: `assistant`, `toolcall`, `toolresult`, `cost`, `error`,
 *   any other type an agent stored, the server's own terminal `complete`, or (several tasks)
 *   `task_complete`, whose data is `{status}` (`null`: deleted)
 * @property {unknown} data its data, parsed as JSON (the text itself if it is not JSON)
 */

/**
 * The state of a stream. `reconnecting` says when the next attempt starts (`at`, in
 * milliseconds since the epoch, as Date.now()) and why; `auth` says that the server refused the
 * credentials (401) or that they do not cover the task (403), and whether a refreshToken call is
 * under way; `failed` is a refusal that waiting cannot cure (400, 404, …). `complete`, `failed`
 * and `closed` are final.
 * @typedef {{name: 'connecting', attempt: number}
 *   | {name: 'live'}
 *   | {name: 'reconnecting', at: number, delay: number, attempt: number, reason: string,
 *      status?: number}
 *   | {name: 'auth', status: number, message: string, refreshing: boolean}
 *   | {name: 'complete'}
 *   | {name: 'failed', status: number, message: string}
 *   | {name: 'closed'}} StreamState
 */

/**
 * A token, or what the application answers when asked for one.
 * @typedef {string | null | undefined} MaybeToken
 */

/**
 * @typedef {object} TaskStreamOptions
 * @property {string} [task] the task to follow
 * @property {string[]} [tasks] instead of `task`: the tasks to follow over one connection
 * @property {string} [base] the server's URL (`https://host:port`); in a browser it defaults to
 *   the page's own, in Node it is required
 * @property {string | (() => MaybeToken | Promise<MaybeToken>)} [token] a bearer token sent as
 *   `Authorization`, or a function that returns the current one before each attempt. Without
 *   one, a browser relies on the `taskstream_token` cookie.
 * @property {(refused: {status: number, message: string}) => MaybeToken | Promise<MaybeToken>}
 *   [refreshToken] called on 401 or 403: a token it returns replaces the current one and the
 *   stream resumes from the same cursor at once. If nothing is returned, or the new token is
 *   refused too before the stream got through, the stream stays in `auth` until resume().
 * @property {(event: TaskEvent) => void} [onEvent] receives every event, of every type
 * @property {(state: StreamState) => void} [onState] receives every change of state
 * @property {string} [lastEventId] start right after this cursor (as if it had been received)
 * @property {RequestCredentials} [credentials] whether fetch sends cookies: `same-origin` (the
 *   default) or `include` for a server on another origin (it must allow credentials)
 * @property {number} [maxDelay] the cap of the exponential backoff, in ms (default 30 s)
 * @property {number} [idleTimeout] reopen a stream that received nothing for this long, in ms
 *   (default 45 s, three keep-alive intervals; 0: never)
 * @property {typeof fetch} [fetch] the fetch to use (default: the global one)
 */

/**
 * How one attempt ended.
 * @typedef {{kind: 'complete'}
 *   | {kind: 'retry', reason: string, status?: number, retryAfter?: number, progressed: boolean}
 *   | {kind: 'auth', status: number, message: string}
 *   | {kind: 'failed', status: number, message: string}
 *   | {kind: 'superseded'}} Outcome
 */

/**
 * Follows one task's event stream: connects at once, delivers every event, reconnects and
 * resumes by itself, and stops at `complete`, at a refusal that waiting cannot cure, or at
 * close().
 */
export class TaskStream {
  /** The task followed, or `null` when several are (their frames name theirs). @type {string | null} */
  #task;
  /** The stream's URL. */
  #url;
  /** @type {TaskStreamOptions} */
  #options;
  /** @type {TaskStreamOptions['token']} */
  #token;
  /** The last event's id: sent as Last-Event-ID, so the server starts right after it. */
  #cursor;
  /** The server's last `retry:`, the base of the backoff. */
  #retryMs = DEFAULT_RETRY_MS;
  /** Attempts that failed in a row since the last one that made progress. */
  #failures = 0;
  /** Whether refreshToken was asked since the last stream that got through. */
  #refreshed = false;
  /** @type {StreamState} */
  #state = { name: 'connecting', attempt: 1 };
  /** Handlers of one event type. @type {Map<string, Set<(event: TaskEvent) => void>>} */
  #handlers = new Map();
  /** Aborts the current attempt. @type {AbortController | null} */
  #controller = null;
  /** The pending reconnect. @type {ReturnType<typeof setTimeout> | undefined} */
  #timer;
  /** Counts attempts and close(): an attempt whose number is no longer current is ignored. */
  #generation = 0;
  /** Resolves `finished`. @type {(state: StreamState) => void} */
  #resolveFinished = () => {};
  /** @type {Promise<StreamState>} */
  #finished;

  /** @param {TaskStreamOptions} options */
  constructor(options) {
    const many = Array.isArray(options?.tasks);
    if (many && (options.tasks.length === 0 || !options.tasks.every((t) => typeof t === 'string'))) {
      throw new TypeError('taskstream: `tasks` must be a non-empty array of task ids');
    }
    if (!many && (!options || typeof options.task !== 'string' || options.task === '')) {
      throw new TypeError('taskstream: `task` must be a task id');
    }
    const fetcher = options.fetch ?? globalThis.fetch;
    if (typeof fetcher !== 'function') throw new TypeError('taskstream: no fetch() here');
    this.#options = { ...options, fetch: fetcher };
    this.#task = many ? null : options.task;
    this.#url = many
      ? serverUrl(options.base, '/events/stream', options.tasks.map((t) => ['task', t]))
      : serverUrl(options.base, `/tasks/${encodeURIComponent(options.task)}/events/stream`, []);
    this.#token = options.token;
    this.#cursor = options.lastEventId ?? '';
    this.#finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
    this.#connect();
  }

  /** The current state. */
  get state() {
    return this.#state;
  }

  /** The last event's id: where the stream resumes. Keep it to resume a later stream. */
  get lastEventId() {
    return this.#cursor;
  }

  /** Resolves with the final state: `complete`, `failed` or `closed`. */
  get finished() {
    return this.#finished;
  }

  /**
   * Calls `handler` with each event of type `type` (after the `onEvent` option's callback).
   * @param {string} type
   * @param {(event: TaskEvent) => void} handler
   * @returns {() => void} removes the handler
   */
  onEvent(type, handler) {
    let set = this.#handlers.get(type);
    if (!set) {
      set = new Set();
      this.#handlers.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * Tries again now, from the same cursor: after `auth` (with a new token, or once the cookie
   * was renewed), during a `reconnecting` wait, or after `failed`. Does nothing while
   * connecting or live, or once complete or closed.
   * @param {string} [token] a new bearer token
   */
  resume(token) {
    const { name } = this.#state;
    if (name === 'connecting' || name === 'live' || name === 'complete' || name === 'closed') {
      return;
    }
    if (token !== undefined) this.#token = token;
    this.#failures = 0;
    this.#refreshed = false;
    this.#connect();
  }

  /** Stops for good: ends the current request and cancels any reconnect. */
  close() {
    if (this.#isFinal()) return;
    this.#finish({ name: 'closed' });
  }

  // === impl: one attempt ===

  async #connect() {
    clearTimeout(this.#timer);
    this.#controller?.abort();
    const generation = ++this.#generation;
    const controller = new AbortController();
    this.#controller = controller;
    this.#setState({ name: 'connecting', attempt: this.#failures + 1 });
    /** @type {Outcome} */
    let outcome;
    try {
      outcome = await this.#attempt(controller, generation);
    } catch (error) {
      outcome = { kind: 'retry', reason: describe(error, controller), progressed: false };
    } finally {
      controller.abort();
    }
    if (generation !== this.#generation || outcome.kind === 'superseded') return;
    this.#settle(outcome);
  }

  /**
   * Makes one request and reads its stream to the end.
   * @param {AbortController} controller
   * @param {number} generation
   * @returns {Promise<Outcome>}
   */
  async #attempt(controller, generation) {
    /** @type {Record<string, string>} */
    const headers = { accept: 'text/event-stream' };
    if (this.#cursor !== '') headers['last-event-id'] = this.#cursor;
    const token = typeof this.#token === 'function' ? await this.#token() : this.#token;
    if (token) headers.authorization = `Bearer ${token}`;
    if (generation !== this.#generation) return { kind: 'superseded' };
    // Called as a plain function: a browser's fetch called as a method of anything but the
    // global object throws "Illegal invocation".
    const fetcher = this.#options.fetch;
    const response = await fetcher(this.#url, {
      headers,
      cache: 'no-store',
      credentials: this.#options.credentials ?? 'same-origin',
      signal: controller.signal,
    });
    const { status } = response;
    if (status === 204) return { kind: 'complete' };
    if (status === 200) {
      const type = response.headers.get('content-type') ?? '';
      if (response.body && /^text\/event-stream\b/i.test(type)) {
        return this.#read(response.body, controller, generation);
      }
      await response.body?.cancel(); // a proxy's page, say: its body is of no use
      return { kind: 'retry', reason: 'the answer is not an event stream', progressed: false };
    }
    const message = await errorMessage(response);
    if (status === 401 || status === 403) return { kind: 'auth', status, message };
    if (status >= 400 && status < 500 && ![408, 425, 429].includes(status)) {
      return { kind: 'failed', status, message };
    }
    const retryAfter = retryAfterMs(response.headers.get('retry-after'));
    return { kind: 'retry', reason: `status ${status}`, status, retryAfter, progressed: false };
  }

  /**
   * Reads a stream until it ends, `complete` arrives, or it is idle too long.
   * @param {ReadableStream<Uint8Array>} body
   * @param {AbortController} controller
   * @param {number} generation
   * @returns {Promise<Outcome>}
   */
  async #read(body, controller, generation) {
    this.#refreshed = false;
    this.#setState({ name: 'live' });
    const opened = Date.now();
    let progressed = false;
    let complete = false;
    const parser = new EventStreamParser(
      {
        onEvent: (frame) => {
          if (complete || generation !== this.#generation) return;
          progressed = true;
          complete = this.#deliver(frame);
        },
        onRetry: (millis) => {
          this.#retryMs = millis;
        },
      },
      this.#cursor,
    );
    const reader = body.getReader();
    const idle = this.#options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT_MS;
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      if (idle > 0) watchdog = setTimeout(() => controller.abort(new IdleError(idle)), idle);
    };
    try {
      arm();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        arm();
        parser.feed(value);
        if (complete) return { kind: 'complete' };
        if (generation !== this.#generation) return { kind: 'superseded' };
      }
    } catch (error) {
      if (generation !== this.#generation) return { kind: 'superseded' };
      const lasted = Date.now() - opened;
      const reason = describe(error, controller);
      return { kind: 'retry', reason, progressed: progressed || lasted >= this.#maxDelay() };
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => {});
    }
    const lasted = Date.now() - opened;
    const reason = 'the stream ended';
    return { kind: 'retry', reason, progressed: progressed || lasted >= this.#maxDelay() };
  }

  /**
   * Hands one event to the callbacks; true when it is the final `complete`.
   * @param {ParsedEvent} frame
   */
  #deliver(frame) {
    this.#cursor = frame.id;
    let data;
    try {
      data = JSON.parse(frame.data);
    } catch {
      data = frame.data;
    }
    let task = this.#task;
    if (task === null && frame.type !== 'complete' && data !== null && typeof data === 'object') {
      task = data.task;
      data = frame.type === 'task_complete' ? { status: data.status } : data.data;
    }
    /** @type {TaskEvent} */
    const event = { task, id: frame.id, type: frame.type, data };
    call(this.#options.onEvent, event);
    for (const handler of this.#handlers.get(frame.type) ?? []) call(handler, event);
    return frame.type === 'complete';
  }

  // === impl: after an attempt ===

  /** @param {Outcome} outcome */
  #settle(outcome) {
    switch (outcome.kind) {
      case 'complete':
        this.#finish({ name: 'complete' });
        break;
      case 'failed':
        this.#finish({ name: 'failed', status: outcome.status, message: outcome.message });
        break;
      case 'auth':
        this.#refuse(outcome.status, outcome.message);
        break;
      case 'retry': {
        if (outcome.progressed) this.#failures = 0;
        this.#failures += 1;
        const delay = reconnectDelay(
          this.#failures,
          this.#retryMs,
          this.#maxDelay(),
          outcome.retryAfter,
        );
        this.#setState({
          name: 'reconnecting',
          at: Date.now() + delay,
          delay,
          attempt: this.#failures + 1,
          reason: outcome.reason,
          ...(outcome.status === undefined ? {} : { status: outcome.status }),
        });
        this.#timer = setTimeout(() => this.#connect(), delay);
        break;
      }
      default:
    }
  }

  /**
   * A 401 or 403: asks refreshToken for a new token once, and resumes with it.
   * @param {number} status
   * @param {string} message
   */
  async #refuse(status, message) {
    const refresh = this.#options.refreshToken;
    const refreshing = typeof refresh === 'function' && !this.#refreshed;
    this.#setState({ name: 'auth', status, message, refreshing });
    if (!refreshing) return;
    this.#refreshed = true;
    const generation = this.#generation;
    let token;
    try {
      token = await refresh({ status, message });
    } catch (error) {
      reportLater(error);
    }
    if (generation !== this.#generation) return; // closed or resumed meanwhile
    if (typeof token === 'string' && token !== '') {
      this.#token = token;
      this.#connect();
    } else {
      this.#setState({ name: 'auth', status, message, refreshing: false });
    }
  }

  #maxDelay() {
    return this.#options.maxDelay ?? DEFAULT_MAX_DELAY_MS;
  }

  #isFinal() {
    const { name } = this.#state;
    return name === 'complete' || name === 'failed' || name === 'closed';
  }

  /** @param {StreamState} state */
  #finish(state) {
    this.#generation += 1;
    clearTimeout(this.#timer);
    this.#controller?.abort();
    this.#controller = null;
    this.#setState(state);
    this.#resolveFinished(state);
  }

  /** @param {StreamState} state */
  #setState(state) {
    this.#state = state;
    call(this.#options.onState, state);
  }
}

/**
 * Starts following a task: the same as `new TaskStream(options)`.
 * @param {TaskStreamOptions} options
 * @returns {TaskStream}
 */
export function follow(options) {
  return new TaskStream(options);
}

// === Helpers ===

/** The abort reason of a stream that received nothing for too long. */
class IdleError extends Error {
  /** @param {number} idle */
  constructor(idle) {
    super(`nothing received for ${Math.round(idle / 1000)} s`);
    this.name = 'IdleError';
  }
}

/**
 * The URL of `path` with query `params` on the server at `base` (the page's own in a browser).
 * @param {string | undefined} base
 * @param {string} path
 * @param {[string, string][]} params
 */
function serverUrl(base, path, params) {
  const origin = base ?? globalThis.location?.origin;
  if (origin === undefined) {
    throw new TypeError('taskstream: `base` (the server URL) is required outside a browser');
  }
  const url = new URL(origin);
  url.pathname = url.pathname.replace(/\/+$/, '') + path;
  url.search = new URLSearchParams(params).toString();
  url.hash = '';
  return url.href;
}

/**
 * The `error` of a refusal's JSON body, or its status text.
 * @param {Response} response
 */
async function errorMessage(response) {
  try {
    const body = JSON.parse(await response.text());
    if (body && typeof body.error === 'string') return body.error;
  } catch {
    // Not the server's JSON (a proxy's page, say): the status text says enough.
  }
  return response.statusText || `status ${response.status}`;
}

/**
 * Why an attempt failed, in a few words.
 * @param {unknown} error
 * @param {AbortController} controller
 */
function describe(error, controller) {
  if (controller.signal.reason instanceof IdleError) return controller.signal.reason.message;
  const cause = /** @type {{cause?: {code?: string}}} */ (error)?.cause?.code;
  const text = error instanceof Error ? error.message : String(error);
  return cause ? `${text} (${cause})` : text;
}

/**
 * Calls an application callback; an exception it throws is reported, not allowed to stop the
 * stream.
 * @template T
 * @param {((value: T) => void) | undefined} callback
 * @param {T} value
 */
function call(callback, value) {
  if (typeof callback !== 'function') return;
  try {
    callback(value);
  } catch (error) {
    reportLater(error);
  }
}

/**
 * Rethrows `error` outside the stream's own code, so that it shows as an uncaught error (the
 * console in a browser, the process's handler in Node) without breaking the stream.
 * @param {unknown} error
 */
function reportLater(error) {
  setTimeout(() => {
    throw error;
  }, 0);
}
