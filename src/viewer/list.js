// The task list, live (GET /): new tasks appear at the top and status badges change as they
// happen, from the live task list (GET /tasks as an event stream: a snapshot on every connect,
// then one frame per change, each with the task's row and its version). EventSource asks for
// `text/event-stream` by itself and reconnects by itself; each reconnect starts with a new
// snapshot, so nothing is lost. Older pages (?before=) stay as they were served.
//
// Values from the stream are inserted with textContent, never as HTML.

const params = new URLSearchParams(window.location.search);
const list = document.getElementById('tasks');
const watch = document.getElementById('watch-running');
/** The most tasks one watch page follows: the server's --max-stream-tasks. */
const MAX_WATCHED = Number(watch.dataset.max);

/** The newest version of each task on the page. @type {Map<string, number>} */
const known = new Map();
for (const row of list.querySelectorAll('li[data-id]')) {
  known.set(row.dataset.id, Number(row.dataset.version));
}

if (!params.has('before')) {
  const limit = params.get('limit');
  const source = new EventSource('/tasks' + (limit ? `?limit=${encodeURIComponent(limit)}` : ''));
  source.addEventListener('snapshot', (e) => {
    // Oldest first, so that each new one goes on top and the newest ends first.
    for (const task of JSON.parse(e.data).tasks.reverse()) apply(task);
    list.dataset.live = 'true';
  });
  source.addEventListener('error', () => {
    list.dataset.live = 'false'; // EventSource reconnects by itself; a snapshot follows
  });
  source.addEventListener('task', (e) => apply(JSON.parse(e.data)));
  source.addEventListener('task_deleted', (e) => {
    const { id } = JSON.parse(e.data);
    rowOf(id)?.remove();
    known.delete(id);
    updateWatch();
  });
}

/** Shows a task's row unless the page already has a newer one. */
function apply(task) {
  const seen = known.get(task.id);
  if (seen !== undefined && task.version <= seen) return;
  known.set(task.id, task.version);
  let row = rowOf(task.id);
  if (!row) {
    row = build(task.id);
    list.prepend(row);
    document.getElementById('no-tasks')?.remove();
  }
  row.dataset.version = String(task.version);
  row.querySelector('.title').textContent = task.title || '(untitled)';
  const status = row.querySelector('.status');
  status.textContent = task.status;
  status.dataset.status = task.status;
  updateWatch();
}

function rowOf(id) {
  return [...list.children].find((row) => row.dataset.id === id);
}

/** An empty row of the list, shaped like the server's. */
function build(id) {
  const row = document.createElement('li');
  row.dataset.id = id;
  const link = document.createElement('a');
  link.href = '/tasks/' + encodeURIComponent(id);
  const title = document.createElement('span');
  title.className = 'title';
  const label = document.createElement('span');
  label.className = 'id';
  label.textContent = id;
  link.append(title, label);
  const status = document.createElement('span');
  status.className = 'status';
  row.append(link, status);
  return row;
}

/** Points "watch all running" at the tasks in progress on the page. */
function updateWatch() {
  const running = [...list.children]
    .filter((row) => row.querySelector('.status')?.dataset.status === 'InProgress')
    .slice(0, MAX_WATCHED)
    .map((row) => ['task', row.dataset.id]);
  watch.hidden = running.length === 0;
  watch.href = '/watch?' + new URLSearchParams(running).toString();
}
