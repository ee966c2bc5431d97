//! The end-to-end tools: programs run as child processes that report what they see as JSON
//! lines: a headless Chromium, Firefox or WebKit driven through `tests/e2e/browser.mjs`, Node's `eventsource` and
//! Python's `aiohttp-sse-client` (which this project did not write), and Node running scripts
//! of `tests/e2e` against the project's own `taskstream.js` (see [`crate::js_client`]).
//!
//! Only the tests built with `--features e2e` run them, but this module is always compiled (it
//! needs none of those programs to build), so plain `cargo clippy` checks it too. A missing
//! tool fails the test with the command that installs it; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::wait::WAIT;

/// `tests/e2e`: the scripts and their installed packages.
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("this crate is tests/support, inside tests")
        .join("e2e")
}

/// Fails the test, saying how to install `what`, unless `path` exists.
fn require(path: &Path, what: &str, install: &str) {
    assert!(
        path.exists(),
        "e2e: {what} is missing ({} not found). Install it with `{install}` \
         (`.ci/run` does this), or run plain `cargo test` without the e2e feature.",
        path.display()
    );
}

/// A command that runs `script` (in `tests/e2e`) with Node and the packages of
/// `tests/e2e/package.json`.
pub fn node(script: &str) -> Command {
    let dir = e2e_dir();
    require(
        &dir.join("node_modules/eventsource"),
        "Node packages",
        "npm ci --prefix tests/e2e",
    );
    let mut command = Command::new("node");
    command.arg(dir.join(script)).current_dir(&dir);
    command
}

/// A command that runs `script` (in `tests/e2e`) with the Python of `tests/e2e/.venv`.
pub fn python(script: &str) -> Command {
    let dir = e2e_dir();
    let python = dir.join(".venv/bin/python");
    require(
        &python,
        "the Python environment",
        "python3 -m venv tests/e2e/.venv && tests/e2e/.venv/bin/pip install -r tests/e2e/requirements.txt",
    );
    let mut command = Command::new(python);
    command.arg(dir.join(script)).current_dir(&dir);
    command
}

/// A child process that writes one JSON value per line on stdout.
pub struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Everything it wrote on stderr, for failure messages.
    stderr: Arc<Mutex<String>>,
}

impl Script {
    /// Starts `command`. It is killed if the test ends while it still runs.
    pub fn spawn(mut command: Command, name: &str) -> Script {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("e2e: cannot start {name}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf).await {
                sink.lock()
                    .expect("stderr buffer")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Script {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    /// The next JSON line, `None` when it closed stdout. Fails the test after `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let line = match tokio::time::timeout(wait, self.stdout.next_line()).await {
            Ok(Ok(line)) => line?,
            Ok(Err(e)) => panic!("{}: cannot read its output: {e}", self.name),
            Err(_) => panic!(
                "{}: said nothing for {wait:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        };
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: wrote {line:?}, not JSON: {e}", self.name)),
        )
    }

    /// The next JSON line; fails the test if it ends or says nothing for [`WAIT`].
    pub async fn next(&mut self) -> Value {
        match self.next_within(WAIT).await {
            Some(value) => value,
            None => panic!("{}: ended early; stderr:\n{}", self.name, self.stderr()),
        }
    }

    /// Writes one JSON line to its stdin.
    pub async fn send(&mut self, value: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        let line = format!("{value}\n");
        stdin
            .write_all(line.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{}: cannot write to it: {e}", self.name));
    }

    /// Closes its stdin and waits for it to exit (at most [`WAIT`]).
    pub async fn exit(mut self) -> ExitStatus {
        drop(self.stdin.take());
        match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => panic!("{}: {e}", self.name),
            Err(_) => panic!("{}: still running; stderr:\n{}", self.name, self.stderr()),
        }
    }
}

/// One browser at a time in a test binary: the machine is small and a browser is not.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The browsers `tests/e2e/browser.mjs` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Debian's `/usr/bin/chromium` (or `$CHROMIUM`), through playwright-core.
    Chromium,
    /// Debian's `/usr/bin/firefox-esr` (or `$FIREFOX`), through puppeteer-core.
    Firefox,
    /// WebKitGTK's MiniBrowser (Safari's engine as Linux has it), through WebKitWebDriver on a
    /// private Xvfb display (`tests/e2e/webkit.mjs`).
    WebKit,
}

impl Engine {
    /// Its executable, the package that installs it, and its name for `browser.mjs`.
    fn install(self) -> (std::ffi::OsString, &'static str, &'static str) {
        let (variable, default, package, name) = match self {
            Engine::Chromium => ("CHROMIUM", "/usr/bin/chromium", "chromium", "chromium"),
            Engine::Firefox => ("FIREFOX", "/usr/bin/firefox-esr", "firefox-esr", "firefox"),
            Engine::WebKit => (
                "WEBKITWEBDRIVER",
                "/usr/bin/WebKitWebDriver",
                "webkit2gtk-driver xvfb",
                "webkit",
            ),
        };
        let executable = std::env::var_os(variable).unwrap_or_else(|| default.into());
        (executable, package, name)
    }
}

/// A headless browser with one page, driven through `tests/e2e/browser.mjs`.
pub struct Browser {
    script: Script,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts Chromium with a fresh profile.
    pub async fn launch() -> Browser {
        Browser::launch_engine(Engine::Chromium).await
    }

    /// Starts `engine` with a fresh profile.
    pub async fn launch_engine(engine: Engine) -> Browser {
        let (executable, package, name) = engine.install();
        require(
            Path::new(&executable),
            package,
            &format!("apt-get install {package}"),
        );
        require(
            &e2e_dir().join("node_modules/puppeteer-core"),
            "the browser drivers",
            "npm ci --prefix tests/e2e",
        );
        let turn = ONE_BROWSER.lock().await;
        let mut command = node("browser.mjs");
        command.env("TASKSTREAM_BROWSER", name);
        let mut script = Script::spawn(command, "browser.mjs");
        let ready = script.next().await;
        assert_eq!(ready, json!({ "ok": "ready" }), "browser.mjs did not start");
        Browser {
            script,
            _turn: turn,
        }
    }

    /// Runs one command (see `browser.mjs`) on page 0 and returns its value; fails the test on
    /// an error.
    pub async fn call(&mut self, command: Value) -> Value {
        self.script.send(&command).await;
        let answer = self.script.next().await;
        match answer.get("ok") {
            Some(value) => value.clone(),
            None => panic!("browser: {command} failed: {}", answer["error"]),
        }
    }

    /// Runs one command on page `page` (see [`Browser::new_page`]).
    pub async fn call_on(&mut self, page: usize, mut command: Value) -> Value {
        command["page"] = json!(page);
        self.call(command).await
    }

    /// Opens another page in the same browser (its cookies and its six connections per host
    /// are shared with the others); returns its number.
    pub async fn new_page(&mut self) -> usize {
        let page = self.call(json!({ "cmd": "newPage" })).await;
        page.as_u64().expect("a page number") as usize
    }

    /// Loads `url` and waits for it.
    pub async fn goto(&mut self, url: &str) {
        self.call(json!({ "cmd": "goto", "url": url })).await;
    }

    /// The value of the JavaScript expression `js` in the page.
    pub async fn eval(&mut self, js: &str) -> Value {
        self.call(json!({ "cmd": "eval", "js": js })).await
    }

    /// Waits (at most [`WAIT`]) until `js` is truthy in the page, and returns its value.
    pub async fn wait_for(&mut self, what: &str, js: &str) -> Value {
        // The browser gives up first, so that its answer (not a silent pipe) says what went wrong.
        let timeout = WAIT.saturating_sub(Duration::from_secs(3)).as_millis() as u64;
        let command = json!({ "cmd": "waitFor", "js": js, "timeoutMs": timeout });
        self.script.send(&command).await;
        let answer = self.script.next().await;
        match answer.get("ok") {
            Some(value) => value.clone(),
            None => {
                let state = self.eval(PAGE_STATE).await;
                let requests = self.call(json!({ "cmd": "requests" })).await;
                let errors = self.call(json!({ "cmd": "errors" })).await;
                panic!(
                    "browser: waiting for {what}: {}\nthe page shows {state}\n\
                     stream requests: {requests}\npage errors: {errors}",
                    answer["error"]
                )
            }
        }
    }

    /// Clicks the element that `selector` finds.
    pub async fn click(&mut self, selector: &str) {
        self.call(json!({ "cmd": "click", "selector": selector }))
            .await;
    }

    /// Resizes the page's viewport.
    pub async fn viewport(&mut self, width: u32, height: u32) {
        self.call(json!({ "cmd": "viewport", "width": width, "height": height }))
            .await;
    }

    /// Saves a screenshot at `path`: of the viewport, or of the whole page if `full_page`.
    pub async fn screenshot(&mut self, path: &Path, full_page: bool) {
        self.call(json!({ "cmd": "screenshot", "path": path, "fullPage": full_page }))
            .await;
    }

    /// Sets a cookie for the site of `url` (as a sign-in would).
    pub async fn set_cookie(&mut self, url: &str, name: &str, value: &str) {
        self.call(json!({ "cmd": "cookie", "url": url, "name": name, "value": value }))
            .await;
    }

    /// The stream requests the page made so far.
    pub async fn stream_requests(&mut self) -> Vec<StreamRequest> {
        let value = self.call(json!({ "cmd": "requests" })).await;
        serde_json::from_value(value).expect("requests")
    }

    /// Uncaught errors and console errors of the page so far.
    pub async fn errors(&mut self) -> Vec<String> {
        let value = self.call(json!({ "cmd": "errors" })).await;
        serde_json::from_value(value).expect("errors")
    }

    /// Closes the browser and checks that it exited cleanly.
    pub async fn close(self) {
        let status = self.script.exit().await;
        assert!(status.success(), "browser.mjs exited with {status}");
    }
}

/// What the page shows, for failure messages and assertions.
pub const PAGE_STATE: &str = "({
    state: document.getElementById('state')?.dataset.state,
    text: document.getElementById('state-text')?.textContent,
    cards: [...document.querySelectorAll('#events .card')].map(card => ({
        id: card.dataset.id,
        type: card.dataset.type,
        kind: card.querySelector('.kind').textContent,
        tool: card.querySelector('.tool')?.textContent ?? null,
        outcome: card.querySelector('.outcome')?.textContent ?? null,
        body: card.querySelector('.body').textContent,
    })),
})";

/// One request for an event stream, as the browser made it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct StreamRequest {
    /// Its URL, query included.
    pub url: String,
    /// `fetch` for taskstream.js's requests (the viewer's), `eventsource` for EventSource's.
    #[serde(rename = "type")]
    pub kind: String,
    /// The `Last-Event-ID` header it carried.
    #[serde(rename = "lastEventId")]
    pub last_event_id: Option<String>,
}
