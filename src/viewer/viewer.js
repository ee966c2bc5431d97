// The live view of one task (GET /tasks/{id}): reads the task's event stream with the browser's
// own EventSource and shows one card per event.
//
// Every value that comes from the stream is inserted with textContent, never as HTML, so event
// content cannot add markup or run script (the page's content-security-policy forbids inline
// script as well).
//
// EventSource reconnects by itself, with Last-Event-ID, when a stream drops. It gives up for good
// on any answer other than 200, and does not say which, so on that kind of failure the page asks
// once with fetch() to learn the status: 401 means "sign in again", 503 (and other transient
// failures) means "retry later with backoff", resuming from the last event shown.
'use strict';

(() => {
  /** Labels of the event kinds the protocol defines. */
  const LABELS = {
    assistant: 'Assistant',
    toolcall: 'Tool call',
    toolresult: 'Tool result',
    cost: 'Cost',
    error: 'Error',
  };

  /**
   * Further event names to show. EventSource has no catch-all listener: an event is delivered
   * only to listeners of its own name, so a type not named here is not shown.
   */
  const OTHER_NAMES = [
    'agent_complete', 'agent_open', 'agent_message', 'message',
    'thinking', 'reasoning', 'user', 'system', 'status', 'log', 'info', 'warning',
  ];

  /** First wait after a refused connection, doubled after each refusal up to the maximum. */
  const FIRST_BACKOFF_MS = 1000;
  const MAX_BACKOFF_MS = 30000;

  /** How close to the end of the page counts as "at the end", so that new cards scroll in. */
  const END_SLACK_PX = 64;

  const streamUrl = document.body.dataset.stream;
  const list = document.getElementById('events');
  const empty = document.getElementById('empty');
  const state = document.getElementById('state');
  const stateText = document.getElementById('state-text');
  const again = document.getElementById('again');
  const jump = document.getElementById('jump');

  /** The EventSource in use; a replaced or closed one is ignored. */
  let source = null;
  /** The id of the last event shown: where a new connection resumes. */
  let cursor = '';
  let backoff = FIRST_BACKOFF_MS;
  let retryTimer = 0;
  let shown = 0;

  function setState(name, text, canRetry = false) {
    state.dataset.state = name;
    stateText.textContent = text;
    again.hidden = !canRetry;
  }

  function url() {
    return cursor ? streamUrl + '?last_event_id=' + encodeURIComponent(cursor) : streamUrl;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    setState('connecting', 'Connecting…');
    const es = new EventSource(url());
    source = es;
    es.addEventListener('open', () => {
      if (es !== source) return;
      backoff = FIRST_BACKOFF_MS;
      setState('live', 'Live');
    });
    for (const name of [...Object.keys(LABELS), ...OTHER_NAMES]) {
      if (name !== 'error') es.addEventListener(name, show);
    }
    es.addEventListener('error', (event) => {
      if (es !== source) return;
      // An agent's own `error` event carries data (a MessageEvent); a connection error is a
      // plain Event.
      if (event instanceof MessageEvent) show(event);
      else lost(es);
    });
    es.addEventListener('complete', (event) => {
      if (es !== source) return;
      cursor = event.lastEventId || cursor;
      es.close();
      finish();
    });
  }

  function finish() {
    setState('complete', 'Complete');
    const end = element('li', 'end', 'Task finished');
    list.append(end);
    followIfAtEnd(atEnd());
  }

  /** A connection error: the browser either reconnects by itself or has given up. */
  function lost(es) {
    if (es.readyState === EventSource.CONNECTING) {
      setState('reconnecting', 'Reconnecting…');
      return;
    }
    es.close();
    diagnose();
  }

  /** Learns why the stream was refused, and acts on it. */
  async function diagnose() {
    setState('reconnecting', 'Reconnecting…');
    const controller = new AbortController();
    let status = 0;
    let retryAfter = null;
    let message = '';
    try {
      const response = await fetch(url(), {
        headers: { accept: 'text/event-stream' },
        cache: 'no-store',
        credentials: 'same-origin',
        signal: controller.signal,
      });
      status = response.status;
      retryAfter = response.headers.get('retry-after');
      if (status >= 400) message = await errorText(response);
    } catch {
      status = 0; // the server cannot be reached
    } finally {
      controller.abort(); // a 200 is a live stream: only its status was wanted
    }
    switch (status) {
      case 401:
        setState('signin', 'Signed out: sign in again to keep watching this task.', true);
        break;
      case 403:
        setState('forbidden', 'Your sign-in does not cover this task.', true);
        break;
      case 404:
        setState('missing', 'No such task.');
        break;
      case 204:
        finish();
        break;
      case 400:
        setState('failed', 'The server refused the request: ' + message, true);
        break;
      default:
        retryLater(retryAfter);
    }
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return typeof body.error === 'string' ? body.error : '';
    } catch {
      return '';
    }
  }

  /** Opens a new EventSource after a wait: the server's `retry-after`, or the backoff. */
  function retryLater(retryAfter) {
    const hinted = Number(retryAfter) * 1000;
    const wait = Math.min(MAX_BACKOFF_MS, Math.max(backoff, Number.isFinite(hinted) ? hinted : 0));
    backoff = Math.min(MAX_BACKOFF_MS, backoff * 2);
    const seconds = Math.max(1, Math.round(wait / 1000));
    setState('unavailable', `Server unavailable: retrying in ${seconds} s…`, true);
    retryTimer = setTimeout(connect, wait * (1 + Math.random() * 0.2));
  }

  function show(event) {
    cursor = event.lastEventId || cursor;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      data = { content: event.data };
    }
    if (data === null || typeof data !== 'object') data = { content: data };
    const follow = atEnd();
    shown += 1;
    const card = render(event.type, data);
    card.dataset.id = event.lastEventId;
    card.dataset.type = event.type;
    list.append(card);
    empty.hidden = true;
    followIfAtEnd(follow);
  }

  /** One card, shaped by the event's kind. */
  function render(type, data) {
    const kind = Object.hasOwn(LABELS, type) ? type : 'other';
    const card = element('li', 'card card-' + kind);
    const head = element('div', 'head');
    head.append(element('span', 'kind', LABELS[type] || type));
    let body;
    switch (type) {
      case 'assistant':
        body = element('p', 'body text', text(data.content));
        break;
      case 'toolcall':
        head.append(element('code', 'tool', text(data.tool)));
        body = element('pre', 'body args', pretty(data.args));
        break;
      case 'toolresult': {
        const ok = data.success !== false;
        card.classList.add(ok ? 'ok' : 'failed');
        head.append(element('code', 'tool', text(data.tool)));
        head.append(element('span', 'outcome', ok ? '✓ success' : '✗ failed'));
        body = element('pre', 'body output', text(data.output));
        break;
      }
      case 'cost':
        body = element('p', 'body cost', text(data.cost));
        break;
      case 'error':
        body = element('p', 'body text', text(data.error));
        break;
      default:
        body = element('p', 'body text', 'content' in data ? text(data.content) : pretty(data));
    }
    head.append(element('span', 'n', '#' + shown));
    card.append(head, body);
    return card;
  }

  function element(tag, className, content) {
    const node = document.createElement(tag);
    node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function text(value) {
    return typeof value === 'string' ? value : pretty(value);
  }

  function pretty(value) {
    return value === undefined ? '' : JSON.stringify(value, null, 2);
  }

  // === Auto-scroll: follow new cards while the reader is at the end of the page ===

  function atEnd() {
    const page = document.documentElement;
    return window.innerHeight + window.scrollY >= page.scrollHeight - END_SLACK_PX;
  }

  function followIfAtEnd(wasAtEnd) {
    if (wasAtEnd) scrollToEnd();
    else jump.hidden = false;
  }

  function scrollToEnd() {
    window.scrollTo(0, document.documentElement.scrollHeight);
    jump.hidden = true;
  }

  window.addEventListener('scroll', () => {
    if (atEnd()) jump.hidden = true;
  }, { passive: true });
  jump.addEventListener('click', scrollToEnd);
  again.addEventListener('click', () => {
    backoff = FIRST_BACKOFF_MS;
    connect();
  });

  connect();
})();
