// The live view of one task (GET /tasks/{id}): follows the task's stream with taskstream.js and
// shows one card per event, whatever its type. The client resumes by itself after a dropped
// stream, a restart or a 503, and reports a refused sign-in as a state; this page only shows
// what it is told.
//
// Every value that comes from the stream is inserted with textContent, never as HTML, so event
// content cannot add markup or run script (the page's content-security-policy forbids inline
// script as well).

import { TaskStream } from './taskstream.js';

/** Labels of the event kinds the protocol defines; any other type is labelled by its name. */
const LABELS = {
  assistant: 'Assistant',
  toolcall: 'Tool call',
  toolresult: 'Tool result',
  cost: 'Cost',
  error: 'Error',
};

/** How close to the end of the page counts as "at the end", so that new cards scroll in. */
const END_SLACK_PX = 64;

const list = document.getElementById('events');
const empty = document.getElementById('empty');
const state = document.getElementById('state');
const stateText = document.getElementById('state-text');
const again = document.getElementById('again');
const jump = document.getElementById('jump');

let shown = 0;

const stream = new TaskStream({
  task: document.body.dataset.task,
  onEvent: show,
  onState: showState,
});

/** @param {import('./taskstream.js').StreamState} next */
function showState(next) {
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

function setState(name, text, canRetry = false) {
  state.dataset.state = name;
  stateText.textContent = text;
  again.hidden = !canRetry;
}

function finish() {
  setState('complete', 'Complete');
  const follow = atEnd();
  list.append(element('li', 'end', 'Task finished'));
  followIfAtEnd(follow);
}

/** @param {import('./taskstream.js').TaskEvent} event */
function show(event) {
  if (event.type === 'complete') return; // the end of the stream, shown by finish()
  let data = event.data;
  if (data === null || typeof data !== 'object') data = { content: data };
  const follow = atEnd();
  shown += 1;
  const card = render(event.type, data);
  card.dataset.id = event.id;
  card.dataset.type = event.type;
  card.dataset.task = event.task;
  list.append(card);
  empty.hidden = true;
  followIfAtEnd(follow);
}

/** One card, shaped by the event's kind; a type the page does not know gets a generic card. */
function render(type, data) {
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
again.addEventListener('click', () => stream.resume());
