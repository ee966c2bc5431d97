//! taskstream.js, the project's own client, under test: clients run by
//! `tests/e2e/client_driver.mjs`, either in Node (`js_clients.mjs`, which imports the module
//! from the repository as a Node application does) or in browser pages (Chromium, Firefox, WebKit; which import it from
//! the server's `/assets/taskstream.js`), and a log per client of what it reported.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::e2e::{Browser, Engine, Script, node};

/// Where the clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One Node process runs every client.
    Node,
    /// One Chromium page per client.
    Chromium,
    /// One Firefox page per client.
    Firefox,
    /// One WebKit (WebKitGTK) tab per client.
    WebKit,
}

impl Runtime {
    /// The browser it runs in, if any.
    fn engine(self) -> Option<Engine> {
        match self {
            Runtime::Node => None,
            Runtime::Chromium => Some(Engine::Chromium),
            Runtime::Firefox => Some(Engine::Firefox),
            Runtime::WebKit => Some(Engine::WebKit),
        }
    }
}

/// Most browser pages that follow a stream of one host at once: over HTTP/1.1 Chromium,
/// Firefox and WebKit allow six connections per host across all their pages, and one stays free
/// for page loads.
pub const MAX_PAGES: usize = 5;

/// How often browser pages are asked for their reports.
const PAGE_POLL: Duration = Duration::from_millis(50);

/// How long one read of Node's reports waits before the deadline is checked again.
const NODE_POLL: Duration = Duration::from_millis(200);

/// What one client reported, in order.
#[derive(Debug, Default, Clone)]
pub struct ClientLog {
    /// Every event its catch-all callback received: `{task, id, type, data}`.
    pub events: Vec<Value>,
    /// Every event a handler of one type received: `{type, id}`.
    pub typed: Vec<Value>,
    /// Every state it went through: `{name, …}`.
    pub states: Vec<Value>,
    /// Every request it made: `{lastEventId, authorization}`.
    pub requests: Vec<Value>,
    /// Every call of its refreshToken callback: `{status, message}`.
    pub refreshes: Vec<Value>,
}

impl ClientLog {
    /// The name of its current state (`connecting` before it reported any).
    pub fn state(&self) -> &str {
        self.states
            .last()
            .and_then(|state| state["name"].as_str())
            .unwrap_or("connecting")
    }

    /// The states it went through called `name`.
    pub fn states_named(&self, name: &str) -> Vec<&Value> {
        self.states.iter().filter(|s| s["name"] == name).collect()
    }

    /// The events it received before `complete`, as `cursor content` (the form of
    /// [`crate::ledger::committed`]).
    pub fn ledger(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|event| event["type"] != "complete")
            .map(|event| {
                let id = event["id"].as_str().unwrap_or_default();
                let content = event["data"]["content"].as_str().unwrap_or_default();
                format!("{id} {content}")
            })
            .collect()
    }

    /// A short account for failure messages.
    fn summary(&self) -> String {
        let recent: Vec<&Value> = self.states.iter().rev().take(3).collect();
        format!(
            "{} events, {} requests, {} refreshes, state {}, last states (newest first) {recent:?}",
            self.events.len(),
            self.requests.len(),
            self.refreshes.len(),
            self.state()
        )
    }
}

/// Where the clients run, and how to reach them.
enum Runner {
    Node(Script),
    Browser(Browser),
}

/// A number of taskstream.js clients of one server, each driven by the test.
pub struct JsClients {
    runner: Runner,
    /// The server's URL, `http://host:port`.
    base: String,
    logs: Vec<ClientLog>,
}

impl JsClients {
    /// Starts `count` clients of the server at `base` (`http://host:port`) in `runtime`; none
    /// follows a task yet. In a browser each client has a page of its own on the server's origin
    /// (at most [`MAX_PAGES`]).
    pub async fn start(runtime: Runtime, base: &str, count: usize) -> JsClients {
        let runner = match runtime.engine() {
            None => {
                let mut script = Script::spawn(node("js_clients.mjs"), "js_clients.mjs");
                assert_eq!(script.next().await, json!({ "ready": true }));
                Runner::Node(script)
            }
            Some(engine) => {
                assert!(count <= MAX_PAGES, "at most {MAX_PAGES} pages per host");
                let mut browser = Browser::launch_engine(engine).await;
                for client in 0..count {
                    let page = if client == 0 {
                        0
                    } else {
                        browser.new_page().await
                    };
                    let url = format!("{base}/healthz");
                    browser
                        .call_on(page, json!({ "cmd": "goto", "url": url }))
                        .await;
                    browser.call_on(page, json!({ "cmd": "driver" })).await;
                }
                Runner::Browser(browser)
            }
        };
        JsClients {
            runner,
            base: base.to_owned(),
            logs: vec![ClientLog::default(); count],
        }
    }

    /// Client `client` starts following `task`, with `options` (see `client_driver.mjs`:
    /// `token`, `refresh`, `maxDelay`, `types`).
    pub async fn follow(&mut self, client: usize, task: &str, options: Value) {
        let mut command =
            json!({ "cmd": "follow", "client": client, "base": self.base, "task": task });
        if let (Some(command), Some(options)) = (command.as_object_mut(), options.as_object()) {
            command.extend(options.clone());
        }
        self.command(client, command).await;
    }

    /// Every client follows `task` with `options`.
    pub async fn follow_all(&mut self, task: &str, options: Value) {
        for client in 0..self.logs.len() {
            self.follow(client, task, options.clone()).await;
        }
    }

    /// Sends one command of `client_driver.mjs` to client `client`.
    pub async fn command(&mut self, client: usize, command: Value) {
        match &mut self.runner {
            Runner::Node(script) => script.send(&command).await,
            Runner::Browser(browser) => {
                let js = format!("(window.__command({command}), true)");
                browser
                    .call_on(client, json!({ "cmd": "eval", "js": js }))
                    .await;
            }
        }
    }

    /// What each client reported so far.
    pub fn logs(&self) -> &[ClientLog] {
        &self.logs
    }

    /// Reads reports until `done` holds for the logs, and returns them; fails the test, with
    /// what each client saw, after `deadline`.
    pub async fn wait_until(
        &mut self,
        what: &str,
        deadline: Duration,
        done: impl Fn(&[ClientLog]) -> bool,
    ) -> &[ClientLog] {
        let until = Instant::now() + deadline;
        while !done(&self.logs) {
            if Instant::now() >= until {
                let seen: Vec<String> = self.logs.iter().map(ClientLog::summary).collect();
                panic!("timed out after {deadline:?} waiting for {what}; the clients: {seen:#?}");
            }
            self.read_reports().await;
        }
        &self.logs
    }

    /// Waits until every client is in state `name`.
    pub async fn wait_for_all(&mut self, name: &str, deadline: Duration) -> &[ClientLog] {
        self.wait_until(&format!("every client {name}"), deadline, |logs| {
            logs.iter().all(|log| log.state() == name)
        })
        .await
    }

    /// Reads what the clients reported since the last call (waiting a little for it).
    async fn read_reports(&mut self) {
        let mut reports = Vec::new();
        match &mut self.runner {
            Runner::Node(script) => {
                // `next_line` is cancel-safe: a timeout loses no report.
                if let Ok(report) = tokio::time::timeout(NODE_POLL, script.next()).await {
                    reports.push(report);
                }
            }
            Runner::Browser(browser) => {
                for page in 0..self.logs.len() {
                    let js = json!({ "cmd": "eval", "js": "window.__reports.splice(0)" });
                    let batch = browser.call_on(page, js).await;
                    reports.extend(batch.as_array().cloned().unwrap_or_default());
                }
                if reports.is_empty() {
                    tokio::time::sleep(PAGE_POLL).await;
                }
            }
        }
        for report in reports {
            self.apply(report);
        }
    }

    /// Files one report in its client's log.
    fn apply(&mut self, report: Value) {
        let client = report["client"].as_u64().expect("a client number") as usize;
        let log = &mut self.logs[client];
        for (field, list) in [
            ("event", &mut log.events),
            ("typed", &mut log.typed),
            ("state", &mut log.states),
            ("request", &mut log.requests),
            ("refresh", &mut log.refreshes),
        ] {
            if let Some(value) = report.get(field) {
                list.push(value.clone());
            }
        }
    }

    /// Stops the clients: Node must exit cleanly, and no browser page may have thrown.
    pub async fn close(self) {
        match self.runner {
            Runner::Node(script) => {
                let status = script.exit().await;
                assert!(status.success(), "js_clients.mjs exited with {status}");
            }
            Runner::Browser(mut browser) => {
                let thrown: Vec<String> = browser
                    .errors()
                    .await
                    .into_iter()
                    .filter(|error| error.starts_with("page error"))
                    .collect();
                assert!(thrown.is_empty(), "the pages threw: {thrown:#?}");
                browser.close().await;
            }
        }
    }
}
