// A remote control for headless browser pages, for tests/e2e_browser.rs and
// tests/e2e_js_client.rs.
//
// The Rust test sends one JSON command per line on stdin and reads one JSON answer per line on
// stdout ({"ok": value} or {"error": message}); the test logic stays in Rust, next to the server
// and the database it controls. The browser runs with a fresh profile that is removed on exit,
// and closes when stdin closes, so a test that fails cannot leave it running:
//   - Chromium (the default): Debian's /usr/bin/chromium, or $CHROMIUM, through playwright-core;
//   - Firefox ($TASKSTREAM_BROWSER=firefox): Debian's /usr/bin/firefox-esr, or $FIREFOX, through
//     puppeteer-core and WebDriver BiDi. Playwright drives only its own patched Firefox builds,
//     which are downloaded from outside the package registries; puppeteer drives a stock one.
//   - WebKit ($TASKSTREAM_BROWSER=webkit), Safari's engine as Linux has it: see webkit.mjs.
//     It has no request log and no cookie command.
//
// Commands act on page 0, or on the page numbered by their "page" field:
//   {"cmd": "newPage"}                     open another page; its number
//   {"cmd": "goto", "url"}                 load a page
//   {"cmd": "eval", "js"}                  evaluate an expression in the page
//   {"cmd": "waitFor", "js", "timeoutMs"}  wait until the expression is truthy; its value
//   {"cmd": "click", "selector"}
//   {"cmd": "viewport", "width", "height"}
//   {"cmd": "screenshot", "path"}
//   {"cmd": "cookie", "url", "name", "value"}  set a cookie for the site of url
//   {"cmd": "requests"}                    the stream requests so far: url, type, last-event-id
//   {"cmd": "errors"}                      uncaught page errors and console errors so far
//   {"cmd": "driver"}                      load client_driver.mjs into the page, beside the
//                                          server's /assets/taskstream.js: window.__command(c)
//                                          runs a command, window.__reports holds the reports
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';
import { launchWebKit } from './webkit.mjs';

const engine = process.env.TASKSTREAM_BROWSER || 'chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), `taskstream-${engine}-`));
const viewport = { width: 1000, height: 760 };

/** The stream requests of every page: url, resource type, and a promise of its headers. */
const requests = [];

/** Notes a request if it is a stream's. */
function track(url, type, headers) {
  if (url.includes('/events/stream')) requests.push({ url, type, headers });
}

/** Headless Chromium through playwright-core. */
async function launchChromium() {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    viewport,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  // Headers are read later; a request that fails before they are known has none to report.
  context.on('request', (request) =>
    track(request.url(), request.resourceType(), request.allHeaders().catch(() => ({}))));
  return {
    firstPage: context.pages()[0] ?? (await context.newPage()),
    newPage: () => context.newPage(),
    setViewport: (page, size) => page.setViewportSize(size),
    addCookie: (cookie) => context.addCookies([cookie]),
    close: () => context.close(),
  };
}

/** Headless Firefox through puppeteer-core (WebDriver BiDi). */
async function launchFirefox() {
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    userDataDir: profile,
    defaultViewport: viewport,
  });
  // WebDriver BiDi does not tell a request's resource type.
  const trackRequests = (page) => {
    page.on('request', (request) =>
      track(request.url(), null, Promise.resolve(request.headers())));
    return page;
  };
  return {
    firstPage: trackRequests((await browser.pages())[0] ?? (await browser.newPage())),
    newPage: async () => trackRequests(await browser.newPage()),
    setViewport: (page, size) => page.setViewport(size),
    addCookie: (cookie) => browser.setCookie(cookie),
    close: () => browser.close(),
  };
}

const launchers = {
  chromium: launchChromium,
  firefox: launchFirefox,
  webkit: () => launchWebKit(viewport),
};
if (!launchers[engine]) throw new Error(`unknown TASKSTREAM_BROWSER ${JSON.stringify(engine)}`);
const browser = await launchers[engine]();

const errors = [];

/** Collects a page's errors. */
function watch(page) {
  page.on('pageerror', (error) => errors.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  return page;
}

const pages = [watch(browser.firstPage)];

/** client_driver.mjs as an inline module of a page, wired to the server's taskstream.js. */
const driver = fs.readFileSync(new URL('./client_driver.mjs', import.meta.url), 'utf8') + `
import { TaskStream } from '/assets/taskstream.js';
window.__reports = [];
window.__command = createDriver(TaskStream, (report) => window.__reports.push(report));
`;

// Polls from here rather than with page.waitForFunction, which evaluates its string inside the
// page and is therefore refused by the page's content-security-policy (no 'unsafe-eval'), as it
// should be. The tests run with that policy enforced.
// A navigation while waiting (the sign-in page reloads itself) destroys the context an
// evaluation ran in: that is "not yet", and the next poll runs in the new page.
async function waitFor(page, js, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let value;
    try {
      value = await page.evaluate(js);
    } catch (error) {
      if (!/context was destroyed|navigat/i.test(String(error))) throw error;
    }
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function run(command) {
  const page = pages[command.page ?? 0];
  if (!page) throw new Error(`no page ${command.page}`);
  switch (command.cmd) {
    case 'newPage':
      pages.push(watch(await browser.newPage()));
      return pages.length - 1;
    case 'driver':
      await page.addScriptTag({ type: 'module', content: driver });
      return await waitFor(page, 'window.__command !== undefined', 15000);
    case 'goto':
      await page.goto(command.url, { waitUntil: 'load' });
      return null;
    case 'eval':
      return await page.evaluate(command.js);
    case 'waitFor':
      return await waitFor(page, command.js, command.timeoutMs ?? 15000);
    case 'click':
      await page.click(command.selector);
      return null;
    case 'viewport':
      await browser.setViewport(page, { width: command.width, height: command.height });
      return null;
    case 'screenshot':
      fs.mkdirSync(path.dirname(command.path), { recursive: true });
      await page.screenshot({ path: command.path, fullPage: command.fullPage ?? false });
      return null;
    case 'cookie':
      await browser.addCookie({ name: command.name, value: command.value, url: command.url });
      return null;
    case 'requests':
      return await Promise.all(requests.map(async (r) => {
        const lastEventId = (await r.headers)['last-event-id'] ?? null;
        return { url: r.url, type: r.type, lastEventId };
      }));
    case 'errors':
      await browser.collectErrors?.();
      return errors;
    default:
      throw new Error(`unknown command ${JSON.stringify(command.cmd)}`);
  }
}

async function shutdown(code) {
  await browser.close().catch(() => {});
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(1));
const lines = readline.createInterface({ input: process.stdin });
process.stdout.write(JSON.stringify({ ok: 'ready' }) + '\n');
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = { ok: (await run(JSON.parse(line))) ?? null };
  } catch (error) {
    answer = { error: String(error && error.stack ? error.stack : error) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await shutdown(0);
