// taskstream.js's event-stream parser in Node, for tests/e2e_js_client.rs: reads one case per
// line on stdin, {"chunks": [base64, …]}, feeds the chunks to a fresh parser in order, and
// writes what it dispatched: {"events": [{"id", "type", "data"}], "retries": [ms],
// "comments": [text]}. The Rust test feeds the same bytes to its own WHATWG parser and compares.
import readline from 'node:readline';
import { EventStreamParser } from '../../src/viewer/taskstream.js';

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { chunks } = JSON.parse(line);
  const result = { events: [], retries: [], comments: [] };
  const parser = new EventStreamParser({
    onEvent: (event) => result.events.push(event),
    onRetry: (millis) => result.retries.push(millis),
    onComment: (text) => result.comments.push(text),
  });
  for (const chunk of chunks) parser.feed(new Uint8Array(Buffer.from(chunk, 'base64')));
  process.stdout.write(JSON.stringify(result) + '\n');
}
