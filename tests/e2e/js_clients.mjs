// Clients of taskstream.js in Node, for tests/e2e_js_client.rs: imports the module from the
// repository as a Node application would, and runs client_driver.mjs's commands from stdin (one
// JSON object per line), writing its reports to stdout (one JSON object per line). Exits when
// stdin closes.
import readline from 'node:readline';
import { TaskStream } from '../../src/viewer/taskstream.js';
import { createDriver } from './client_driver.mjs';

const print = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const command = createDriver(TaskStream, print);
print({ ready: true });
for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line.trim()) command(JSON.parse(line));
}
process.exit(0);
