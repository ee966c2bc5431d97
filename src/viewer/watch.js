// The watch page (GET /watch?task=a&task=b): the cards of several tasks over one connection,
// the multi-task stream, grouped by task with the task named on each group. A dashboard of
// twenty agents is then one connection, not twenty (a browser opens at most six per host over
// HTTP/1.1). taskstream.js resumes every task by the stream's one cursor after a dropped
// stream or a restart.

import { TaskStream } from './taskstream.js';
import { render, element, setState, showState } from './cards.js';

/** Each task's group on the page: its list of cards, its "no events" line, and its count. */
const lanes = new Map(
  [...document.querySelectorAll('.lane')].map((section) => [
    section.dataset.task,
    {
      section,
      list: section.querySelector('.events'),
      empty: section.querySelector('.empty'),
      shown: 0,
    },
  ]),
);

const again = document.getElementById('again');

const stream = new TaskStream({
  tasks: [...lanes.keys()],
  onEvent: show,
  onState: (next) => showState(next, () => setState('complete', 'Every task finished')),
});

/** @param {import('./taskstream.js').TaskEvent} event */
function show(event) {
  const lane = lanes.get(event.task);
  if (lane === undefined) return; // the final `complete`, shown by the status line
  if (event.type === 'task_complete') {
    const status = event.data?.status;
    lane.section.dataset.state = 'complete';
    lane.list.append(element('li', 'end', status ? `Task finished: ${status}` : 'Task deleted'));
    return;
  }
  lane.shown += 1;
  const card = render(event.type, event.data, lane.shown);
  card.dataset.type = event.type;
  card.dataset.task = event.task;
  lane.list.append(card);
  lane.empty.hidden = true;
}

again.addEventListener('click', () => stream.resume());
