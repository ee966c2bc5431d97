// Node's `eventsource` package (v4), a WHATWG EventSource that this project did not write,
// reading one task's stream for tests/e2e_clients.rs.
//
// Usage: node node_client.mjs <stream url>
// Prints one JSON line per request it makes ({"request": {"url", "lastEventId"}}) and per event
// it receives ({"event": {"type", "id", "data"}}); closes on `complete` and exits 0.
import { EventSource } from 'eventsource';

const url = process.argv[2];
const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');

/** A header of a fetch init, whatever shape the library gives it. */
function header(headers, name) {
  if (!headers) return null;
  if (typeof headers.get === 'function') return headers.get(name);
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  return key === undefined ? null : headers[key];
}

// The library's own requests, reported so the test sees that it resumes with Last-Event-ID.
const fetchAndReport = (input, init = {}) => {
  print({ request: { url: String(input), lastEventId: header(init.headers, 'last-event-id') } });
  return fetch(input, init);
};

const source = new EventSource(url, { fetch: fetchAndReport });
const report = (event) => print({ event: { type: event.type, id: event.lastEventId, data: event.data } });
for (const type of ['assistant', 'toolcall', 'toolresult', 'cost']) {
  source.addEventListener(type, report);
}
source.addEventListener('error', (event) => {
  if (event.data !== undefined) report(event); // an agent's error event
  else print({ connectionError: String(event.message ?? '') });
});
source.addEventListener('complete', (event) => {
  report(event);
  source.close();
  process.exit(0);
});
