//! SSE clients that this project did not write, against a real server: Node's `eventsource`
//! package (v4) and Python's `aiohttp-sse-client`. Each reads a stream that the server closes
//! mid-way (it restarts, as in a deploy), must reconnect by itself with `Last-Event-ID`, and
//! must end with exactly the committed events, once each, in order.
//!
//! Run with `cargo test --features e2e --test e2e_clients`; needs Node with `npm ci --prefix
//! tests/e2e`, and Python with `tests/e2e/.venv` (`.ci/run` installs both).

#![cfg(feature = "e2e")]

use serde_json::Value;
use support::e2e::{Script, node, python};
use support::ledger::{cursor, numbered};
use support::server::{TestServer, fast_config};
use taskstream::Config;

/// Events written before the restart, and after it.
const BEFORE: usize = 5;
const AFTER: usize = 5;

/// What a client script reported.
#[derive(Default, Debug)]
struct Seen {
    /// `(type, id, data)` of each event, in arrival order.
    events: Vec<(String, String, Value)>,
    /// The `Last-Event-ID` of each request it made.
    requests: Vec<Option<String>>,
}

impl Seen {
    /// Reads the client's next line; false once it reported `complete`.
    async fn read(&mut self, client: &mut Script) -> bool {
        let line = client.next().await;
        if let Some(request) = line.get("request") {
            self.requests
                .push(request["lastEventId"].as_str().map(str::to_owned));
        } else if let Some(event) = line.get("event") {
            let kind = event["type"].as_str().expect("type").to_owned();
            let id = event["id"].as_str().expect("id").to_owned();
            let data: Value = serde_json::from_str(event["data"].as_str().expect("data"))
                .unwrap_or_else(|e| panic!("data of {event} is not JSON: {e}"));
            let complete = kind == "complete";
            self.events.push((kind, id, data));
            return !complete;
        }
        true
    }
}

/// The test configuration, with a short drain deadline: a restarting server closes its
/// streams spread over the first half of it, and the tests wait for that.
fn config() -> Config {
    Config {
        drain_deadline: std::time::Duration::from_secs(1),
        ..fast_config()
    }
}

/// Runs `client` (given the stream URL) through a server restart between event `BEFORE` and
/// event `BEFORE + 1`, then checks it ended with every event once, resuming by `Last-Event-ID`.
async fn resumes_across_a_restart(start: impl FnOnce(&str) -> Script) {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", BEFORE).await;

    let url = format!("http://{}/tasks/t/events/stream", server.addr());
    let mut client = start(&url);
    let mut seen = Seen::default();
    while seen.events.len() < BEFORE {
        assert!(seen.read(&mut client).await, "complete came early");
    }

    let server = server.restart(config()).await;
    for i in BEFORE..BEFORE + AFTER {
        server
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
    }
    server.status("t", "Done").await;
    while seen.read(&mut client).await {}
    let status = client.exit().await;
    assert!(status.success(), "the client exited with {status}");

    let (last, events) = seen.events.split_last().expect("events");
    assert_eq!(last.0, "complete");
    let total = (BEFORE + AFTER) as i64;
    assert_eq!(last.1, format!("{}:c", cursor("s1", total)));
    let contents: Vec<String> = events
        .iter()
        .map(|(_, _, data)| data["content"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        contents,
        numbered("e", 0..BEFORE + AFTER),
        "each event once, in order"
    );
    let ids: Vec<&str> = events.iter().map(|(_, id, _)| id.as_str()).collect();
    let expected: Vec<String> = (1..=total).map(|seq| cursor("s1", seq)).collect();
    assert_eq!(ids, expected);
    assert!(events.iter().all(|(kind, _, _)| kind == "assistant"));

    assert!(
        seen.requests.len() >= 2,
        "it reconnected: {:?}",
        seen.requests
    );
    assert_eq!(seen.requests[0], None, "the first request has no cursor");
    let resume = cursor("s1", BEFORE as i64);
    for request in &seen.requests[1..] {
        assert_eq!(
            request.as_deref(),
            Some(resume.as_str()),
            "{:?}",
            seen.requests
        );
    }
}

/// Node's `eventsource` (v4) reconnects by itself with `Last-Event-ID` when the server closes
/// the stream, and ends with every committed event exactly once.
#[tokio::test]
async fn node_eventsource_resumes_across_a_server_restart() {
    resumes_across_a_restart(|url| {
        let mut command = node("node_client.mjs");
        command.arg(url);
        Script::spawn(command, "node_client.mjs")
    })
    .await;
}

/// Python's `aiohttp-sse-client` reconnects by itself with `Last-Event-ID` when the server
/// closes the stream, and ends with every committed event exactly once.
#[tokio::test]
async fn python_aiohttp_sse_client_resumes_across_a_server_restart() {
    resumes_across_a_restart(|url| {
        let mut command = python("python_client.py");
        command.arg(url);
        Script::spawn(command, "python_client.py")
    })
    .await;
}
