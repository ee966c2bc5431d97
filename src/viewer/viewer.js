// The live view of one task (GET /tasks/{id}): follows the task's stream with taskstream.js and
// shows one card per event, whatever its type. The client resumes by itself after a dropped
// stream, a restart or a 503, and reports a refused sign-in as a state; this page only shows
// what it is told. Cards and the status line are cards.js's, shared with the watch page.

import { TaskStream } from './taskstream.js';
import { render, element, setState, showState } from './cards.js';

/** How close to the end of the page counts as "at the end", so that new cards scroll in. */
const END_SLACK_PX = 64;

const list = document.getElementById('events');
const empty = document.getElementById('empty');
const again = document.getElementById('again');
const jump = document.getElementById('jump');

let shown = 0;

const stream = new TaskStream({
  task: document.body.dataset.task,
  onEvent: show,
  onState: (next) => showState(next, finish),
});

function finish() {
  setState('complete', 'Complete');
  const follow = atEnd();
  list.append(element('li', 'end', 'Task finished'));
  followIfAtEnd(follow);
}

/** @param {import('./taskstream.js').TaskEvent} event */
function show(event) {
  if (event.type === 'complete') return; // the end of the stream, shown by finish()
  const follow = atEnd();
  shown += 1;
  const card = render(event.type, event.data, shown);
  card.dataset.id = event.id;
  card.dataset.type = event.type;
  card.dataset.task = event.task;
  list.append(card);
  empty.hidden = true;
  followIfAtEnd(follow);
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
