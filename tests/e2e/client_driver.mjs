// Drives clients of taskstream.js (src/viewer/taskstream.js) for tests/e2e_js_client.rs, in Node
// (js_clients.mjs) or in a Chromium page (browser.mjs injects it beside /assets/taskstream.js).
// It is given the TaskStream class, so the same code runs against the file in both places.
//
// Commands (one object each):
//   {"cmd": "follow", "client", "base", "task", "token"?, "refresh"?, "maxDelay"?, "types"?}
//       starts client number `client` on `task`; with `refresh`, its refreshToken callback
//       reports and waits for a "token" command; `types`: event types to handle with
//       stream.onEvent(type, …) besides the catch-all callback
//   {"cmd": "token", "client", "token"}   answers the client's pending refreshToken call
//   {"cmd": "resume", "client", "token"}  calls stream.resume(token)
//   {"cmd": "close", "client"}
// Reports, each with "client":
//   {"request": {"lastEventId", "authorization"}}   every request the client makes
//   {"event": {"task", "id", "type", "data"}}       what the catch-all callback received
//   {"typed": {"type", "id"}}                      what a handler of one type received
//   {"state": {...}}                               every state change
//   {"refresh": {"status", "message"}}             a refreshToken call

/**
 * @param {typeof import('../../src/viewer/taskstream.js').TaskStream} TaskStream
 * @param {(report: object) => void} report
 * @returns {(command: object) => void}
 */
export function createDriver(TaskStream, report) {
  const streams = new Map();
  const pendingTokens = new Map();

  function follow(command) {
    const { client } = command;
    const fetcher = (url, init) => {
      const headers = init.headers ?? {};
      report({
        client,
        request: {
          lastEventId: headers['last-event-id'] ?? null,
          authorization: headers.authorization ?? null,
        },
      });
      return fetch(url, init);
    };
    const refreshToken = command.refresh
      ? (refused) => {
        report({ client, refresh: refused });
        return new Promise((resolve) => pendingTokens.set(client, resolve));
      }
      : undefined;
    const stream = new TaskStream({
      base: command.base,
      task: command.task,
      token: command.token ?? undefined,
      refreshToken,
      maxDelay: command.maxDelay,
      fetch: fetcher,
      onEvent: (event) => report({ client, event }),
      onState: (state) => report({ client, state }),
    });
    for (const type of command.types ?? []) {
      stream.onEvent(type, (event) => report({ client, typed: { type: event.type, id: event.id } }));
    }
    streams.set(client, stream);
  }

  return (command) => {
    switch (command.cmd) {
      case 'follow':
        follow(command);
        break;
      case 'token': {
        const resolve = pendingTokens.get(command.client);
        pendingTokens.delete(command.client);
        resolve?.(command.token);
        break;
      }
      case 'resume':
        streams.get(command.client)?.resume(command.token);
        break;
      case 'close':
        streams.get(command.client)?.close();
        break;
      default:
        throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
    }
  };
}
