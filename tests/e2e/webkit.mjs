// WebKit for browser.mjs: Safari's engine as it runs on Linux, WebKitGTK's MiniBrowser
// (Debian's libwebkit2gtk-4.1-0), driven through WebKitWebDriver (webkit2gtk-driver) and the
// W3C WebDriver protocol with selenium-webdriver. MiniBrowser needs an X display: it gets a
// private Xvfb (xvfb-run).
//
// It offers what browser.mjs asks of an engine, with pages that answer the subset of
// playwright's Page API that browser.mjs uses. WebDriver has no page events, so a page's
// uncaught errors are collected by listeners installed after each load and reported on demand.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { Builder, By } from 'selenium-webdriver';

/** A free loopback port for WebKitWebDriver. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Waits until the WebDriver server at `url` answers its status. */
async function ready(url, deadlineMs) {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      const answer = await fetch(`${url}/status`);
      if (answer.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`WebKitWebDriver did not start at ${url}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Installed after each load: what the page throws, kept until browser.mjs asks.
const COLLECT_ERRORS = `
  if (!window.__pageErrors) {
    window.__pageErrors = [];
    window.addEventListener('error', (e) => window.__pageErrors.push(String(e.message)));
    window.addEventListener('unhandledrejection', (e) =>
      window.__pageErrors.push(String(e.reason && e.reason.message ? e.reason.message : e.reason)));
  }`;

/** One tab, with the part of playwright's Page API that browser.mjs uses. */
class WebKitPage {
  constructor(driver, handle) {
    this.driver = driver;
    this.handle = handle;
    this.errorListeners = [];
  }

  async focus() {
    await this.driver.switchTo().window(this.handle);
  }

  on(event, listener) {
    if (event === 'pageerror') this.errorListeners.push(listener);
  }

  async goto(url) {
    await this.focus();
    await this.driver.get(url);
    await this.driver.executeScript(COLLECT_ERRORS);
  }

  async evaluate(js) {
    await this.focus();
    return await this.driver.executeScript(`return (${js});`);
  }

  async addScriptTag({ type, content }) {
    await this.focus();
    await this.driver.executeScript(
      `const script = document.createElement('script');
       script.type = arguments[0];
       script.textContent = arguments[1];
       document.head.appendChild(script);`,
      type ?? 'text/javascript',
      content,
    );
  }

  async click(selector) {
    await this.focus();
    await this.driver.findElement(By.css(selector)).click();
  }

  async screenshot({ path }) {
    await this.focus();
    fs.writeFileSync(path, Buffer.from(await this.driver.takeScreenshot(), 'base64'));
  }

  /** Hands what the page threw since the last call to its pageerror listeners. */
  async reportErrors() {
    await this.focus();
    const thrown = await this.driver.executeScript(
      'return window.__pageErrors ? window.__pageErrors.splice(0) : [];');
    for (const message of thrown) {
      for (const listener of this.errorListeners) listener({ message });
    }
  }
}

/**
 * Starts MiniBrowser under WebKitWebDriver on a private X display. The driver and the display
 * run under a shell that ends them both when this process's pipe to it closes, however this
 * process ends (kill -9 included).
 */
export async function launchWebKit(viewport) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const keeper = spawn('sh', ['-c',
    'setsid xvfb-run -a WebKitWebDriver --host=127.0.0.1 "--port=$1" >/dev/null 2>&1 & group=$!; '
    + 'read _; kill -TERM -"$group" 2>/dev/null; wait', 'webkit', String(port)],
  { stdio: ['pipe', 'ignore', 'inherit'] });
  await ready(url, 30000);
  const binary = process.env.MINIBROWSER || '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
  const driver = await new Builder()
    .usingServer(url)
    .withCapabilities({
      browserName: 'MiniBrowser',
      'webkitgtk:browserOptions': { binary, args: ['--automation'] },
    })
    .build();
  await driver.manage().window().setRect(viewport);
  const pages = [new WebKitPage(driver, await driver.getWindowHandle())];
  return {
    firstPage: pages[0],
    newPage: async () => {
      await driver.switchTo().newWindow('tab');
      const page = new WebKitPage(driver, await driver.getWindowHandle());
      pages.push(page);
      return page;
    },
    setViewport: (page, size) => page.focus().then(() => driver.manage().window().setRect(size)),
    addCookie: () => Promise.reject(new Error('cookies are not supported with WebKit here')),
    collectErrors: async () => {
      for (const page of pages) await page.reportErrors();
    },
    close: async () => {
      await driver.quit().catch(() => {});
      keeper.stdin.end();
    },
  };
}
