// Cards: one event of a task as a card shaped by its kind, and the page's status line. Shared
// by the task page (viewer.js) and the watch page of several tasks (watch.js).
//
// Every value that comes from the stream is inserted with textContent, never as HTML, so event
// content cannot add markup or run script (the pages' content-security-policy forbids inline
// script as well).

/** Labels of the event kinds the protocol defines; any other type is labelled by its name. */
const LABELS = {
  assistant: 'Assistant',
  toolcall: 'Tool call',
  toolresult: 'Tool result',
  cost: 'Cost',
  error: 'Error',
};

/**
 * One card, shaped by the event's kind; a type the page does not know gets a generic card.
 * @param {string} type
 * @param {unknown} data
 * @param {number} n the card's number on the page
 */
export function render(type, data, n) {
  if (data === null || typeof data !== 'object') data = { content: data };
  const kind = Object.hasOwn(LABELS, type) ? type : 'other';
  const card = element('li', 'card card-' + kind);
  const head = element('div', 'head');
  head.append(element('span', 'kind', LABELS[kind] ?? type));
  let body;
  switch (kind) {
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
      body = 'content' in data
        ? element('p', 'body text', text(data.content))
        : element('pre', 'body data', pretty(data));
  }
  head.append(element('span', 'n', '#' + n));
  card.append(head, body);
  return card;
}

export function element(tag, className, content) {
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

// === The status line ===

/**
 * Shows the stream's state in the page's status line (`#state`, `#state-text`, `#again`);
 * `finish` is called at `complete`.
 * @param {import('./taskstream.js').StreamState} next
 * @param {() => void} finish
 */
export function showState(next, finish) {
  switch (next.name) {
    case 'connecting':
      setState('connecting', next.attempt > 1 ? 'Reconnecting…' : 'Connecting…');
      break;
    case 'live':
      setState('live', 'Live');
      break;
    case 'reconnecting': {
      const seconds = Math.max(1, Math.round(next.delay / 1000));
      if (next.status === 503) {
        setState('unavailable', `Server busy: retrying in ${seconds} s…`, true);
      } else {
        setState('reconnecting', `Connection lost: retrying in ${seconds} s…`, true);
      }
      break;
    }
    case 'auth':
      if (next.status === 403) setState('forbidden', 'Your sign-in does not cover this task.', true);
      else setState('signin', 'Signed out: sign in again to keep watching this task.', true);
      break;
    case 'complete':
      finish();
      break;
    case 'failed':
      if (next.status === 404) setState('missing', 'No such task.');
      else setState('failed', `The server refused the request: ${next.message}`, true);
      break;
    default:
  }
}

const state = document.getElementById('state');
const stateText = document.getElementById('state-text');
const again = document.getElementById('again');

export function setState(name, text, canRetry = false) {
  state.dataset.state = name;
  stateText.textContent = text;
  again.hidden = !canRetry;
}

