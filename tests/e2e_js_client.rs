//! taskstream.js, the project's client (`src/viewer/taskstream.js`), against a real server, in
//! Node (importing the file from the repository) and in Chromium, Firefox and WebKit (Safari's
//! engine, as WebKitGTK; importing it from the server's `/assets/taskstream.js`): it resumes from its last event across a server restart;
//! in a storm of `503`s from a full server it spreads its retries, honours `retry-after` and
//! never gives up; an expired token is reported, refreshed and the stream resumed with nothing
//! lost; a refused new token is not retried but waits for the application; every event type,
//! unknown ones included, reaches the one callback; and every committed event arrives exactly
//! once while streams end and resume over and over. Its event-stream parser is checked in Node
//! against the WHATWG cases of the Rust test parser, on the same bytes.
//!
//! Run with `cargo test --features e2e --test e2e_js_client`; needs Node 20+, `npm ci --prefix
//! tests/e2e` and the `chromium`, `firefox-esr`, `webkit2gtk-driver` and `xvfb` packages
//! (`.ci/run` installs them).

#![cfg(feature = "e2e")]

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use support::auth::{token, with_auth};
use support::cluster::connect;
use support::e2e::{Script, node};
use support::js_client::{ClientLog, JsClients, MAX_PAGES, Runtime};
use support::ledger::{assert_same, committed, cursor};
use support::server::{TestServer, fast_config};
use support::sse_parser::SseParser;
use support::wait::WAIT;
use support::writer::insert_event;
use taskstream::Config;
use taskstream::wire::{event, sse};

/// The cap of the clients' backoff in these tests (the default is 30 s), so that a client
/// refused a few times in a row is not left waiting long.
const MAX_DELAY_MS: u64 = 3000;

/// The server's `retry-after` on `503`, in seconds.
const RETRY_AFTER_S: u64 = 2;

/// How long a storm or a churn of reconnects may take to settle: several rounds of waits of
/// up to [`MAX_DELAY_MS`] each. Generous on purpose: the machine may be small and loaded.
const SETTLE: Duration = Duration::from_secs(120);

/// The test configuration, with a short drain deadline: a restarting server closes its
/// streams spread over the first half of it.
fn config() -> Config {
    Config {
        drain_deadline: Duration::from_secs(1),
        ..fast_config()
    }
}

/// The server's URL for clients.
fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr())
}

/// The options every client follows with, plus `more`.
fn options(more: Value) -> Value {
    let mut options = json!({ "maxDelay": MAX_DELAY_MS });
    if let (Some(options), Some(more)) = (options.as_object_mut(), more.as_object()) {
        options.extend(more.clone());
    }
    options
}

/// Inserts assistant events `e from` … `e to-1` into session `s1` of `t`.
async fn write(server: &TestServer, from: usize, to: usize) {
    for i in from..to {
        server
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
    }
}

/// Asserts that `log` received exactly `expected` (committed rows as `cursor content`), in
/// order, once each, every event naming task `t`, then `complete` with the completion cursor.
fn assert_delivered(log: &ClientLog, expected: &[String], who: &str) {
    assert_same(&log.ledger(), expected, who);
    assert!(
        log.events.iter().all(|event| event["task"] == "t"),
        "{who}: every event names its task"
    );
    let last = log.events.last().expect("events");
    assert_eq!(last["type"], "complete", "{who}");
    let final_cursor = expected
        .last()
        .and_then(|row| row.split(' ').next())
        .expect("rows");
    assert_eq!(last["id"], format!("{final_cursor}:c"), "{who}");
    assert_eq!(log.state(), "complete", "{who}");
}

/// Whether every client received at least `n` events.
fn all_received(n: usize) -> impl Fn(&[ClientLog]) -> bool {
    move |logs| logs.iter().all(|log| log.events.len() >= n)
}

// === A server restart mid-stream ===

/// A deploy restarts the server while clients stream: each resumes from its last event, by
/// `Last-Event-ID`, and ends with every event once.
async fn resumes_across_a_server_restart(runtime: Runtime, clients: usize) {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    write(&server, 0, 5).await;
    let mut js = JsClients::start(runtime, &base(&server), clients).await;
    js.follow_all("t", options(json!({}))).await;
    js.wait_until("5 events each", WAIT, all_received(5)).await;

    let server = server.restart(config()).await;
    write(&server, 5, 10).await;
    server.status("t", "Done").await;
    let logs = js.wait_for_all("complete", SETTLE).await.to_vec();

    let expected = committed(&server.db, "t").await;
    assert_eq!(expected.len(), 10);
    for (i, log) in logs.iter().enumerate() {
        let who = format!("client {i}");
        assert_delivered(log, &expected, &who);
        assert!(
            !log.states_named("reconnecting").is_empty(),
            "{who} reconnected"
        );
        assert!(log.requests.len() >= 2, "{who}: {:?}", log.requests);
        assert_eq!(log.requests[0]["lastEventId"], Value::Null, "{who}");
        for request in &log.requests[1..] {
            assert_eq!(request["lastEventId"], cursor("s1", 5), "{who}");
        }
    }
    js.close().await;
}

#[tokio::test]
async fn node_resumes_across_a_server_restart() {
    resumes_across_a_server_restart(Runtime::Node, 3).await;
}

#[tokio::test]
async fn chromium_resumes_across_a_server_restart() {
    resumes_across_a_server_restart(Runtime::Chromium, 2).await;
}

#[tokio::test]
async fn firefox_resumes_across_a_server_restart() {
    resumes_across_a_server_restart(Runtime::Firefox, 2).await;
}

#[tokio::test]
async fn webkit_resumes_across_a_server_restart() {
    resumes_across_a_server_restart(Runtime::WebKit, 2).await;
}

// === A storm of 503s ===

/// A full server (`--max-streams`, every slot taken) answers `503` with `retry-after`: every
/// client keeps retrying, each wait at least the `retry-after` and spread at random beyond
/// it, none gives up; once slots free up, every client gets in, in turn, and ends with every
/// event once.
async fn a_storm_of_503s_is_spread_and_outlasted(runtime: Runtime, clients: usize) {
    let full = Config {
        max_streams: 2,
        ..config()
    };
    let server = TestServer::start(full).await;
    server.task("t", "InProgress").await;
    write(&server, 0, 3).await;
    let hogs = [server.stream("t").await, server.stream("t").await];
    assert!(
        hogs.iter().all(|hog| hog.status == 200),
        "the slots are taken"
    );

    let mut js = JsClients::start(runtime, &base(&server), clients).await;
    js.follow_all("t", options(json!({}))).await;
    let refusals = |log: &ClientLog| -> Vec<u64> {
        log.states_named("reconnecting")
            .iter()
            .filter(|state| state["status"] == 503)
            .map(|state| state["delay"].as_u64().expect("delay"))
            .collect()
    };
    let logs = js
        .wait_until("three 503s for every client", SETTLE, |logs| {
            logs.iter().all(|log| refusals(log).len() >= 3)
        })
        .await
        .to_vec();
    let retry_after = RETRY_AFTER_S * 1000;
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.events.is_empty(),
            "client {i} got in while the server was full"
        );
        for delay in refusals(log) {
            assert!(
                (retry_after..=retry_after * 3 / 2).contains(&delay),
                "client {i} waits {delay} ms: at least the retry-after, at most half more"
            );
        }
        assert!(
            log.states.iter().all(|state| ["connecting", "reconnecting"]
                .contains(&state["name"].as_str().unwrap_or(""))),
            "client {i} did not give up: {:?}",
            log.states
        );
    }
    let first_waits: HashSet<u64> = logs.iter().map(|log| refusals(log)[0]).collect();
    assert!(
        first_waits.len() > clients / 2,
        "the clients' waits are spread, not in lockstep: {first_waits:?}"
    );

    write(&server, 3, 6).await;
    drop(hogs);
    server.status("t", "Done").await;
    let logs = js.wait_for_all("complete", SETTLE).await.to_vec();
    let expected = committed(&server.db, "t").await;
    for (i, log) in logs.iter().enumerate() {
        assert_delivered(log, &expected, &format!("client {i}"));
    }
    js.close().await;
}

#[tokio::test]
async fn node_clients_spread_and_outlast_a_storm_of_503s() {
    a_storm_of_503s_is_spread_and_outlasted(Runtime::Node, 12).await;
}

#[tokio::test]
async fn chromium_pages_spread_and_outlast_a_storm_of_503s() {
    a_storm_of_503s_is_spread_and_outlasted(Runtime::Chromium, MAX_PAGES).await;
}

#[tokio::test]
async fn firefox_pages_spread_and_outlast_a_storm_of_503s() {
    a_storm_of_503s_is_spread_and_outlasted(Runtime::Firefox, MAX_PAGES).await;
}

#[tokio::test]
async fn webkit_pages_spread_and_outlast_a_storm_of_503s() {
    a_storm_of_503s_is_spread_and_outlasted(Runtime::WebKit, MAX_PAGES).await;
}

// === Tokens ===

/// The token expires mid-stream: the server ends the stream and refuses the reconnect with
/// `401`; the client reports it as `auth` and asks for a new token, making no request
/// meanwhile; with the new token it resumes from its last event, and nothing committed in the
/// meantime is lost.
async fn an_expired_token_is_refreshed_and_the_stream_resumes(runtime: Runtime) {
    let server = TestServer::start(with_auth(config())).await;
    server.task("t", "InProgress").await;
    write(&server, 0, 2).await;
    let mut js = JsClients::start(runtime, &base(&server), 1).await;
    let first = token(&["t"], 10);
    js.follow(0, "t", options(json!({ "token": first, "refresh": true })))
        .await;
    js.wait_until("2 events", WAIT, all_received(2)).await;
    write(&server, 2, 3).await;

    let log = js
        .wait_until("a refresh", WAIT * 2, |logs| !logs[0].refreshes.is_empty())
        .await[0]
        .clone();
    assert_eq!(log.refreshes[0]["status"], 401, "{:?}", log.refreshes);
    let had = log.events.len() as i64;
    let auth = log.states.last().expect("a state");
    assert_eq!(auth["name"], "auth");
    assert_eq!(auth["status"], 401);
    assert_eq!(auth["refreshing"], true);
    let before = log.requests.len();
    let refused = &log.requests[before - 1];
    assert_eq!(refused["lastEventId"], cursor("s1", had));
    assert_eq!(refused["authorization"], format!("Bearer {first}"));

    write(&server, 3, 5).await; // while the client waits for a token
    let second = token(&["t"], 60);
    js.command(0, json!({ "cmd": "token", "client": 0, "token": second }))
        .await;
    js.wait_until("5 events", WAIT, all_received(5)).await;
    server.status("t", "Done").await;
    let log = js.wait_for_all("complete", WAIT).await[0].clone();

    assert_delivered(&log, &committed(&server.db, "t").await, "the client");
    assert_eq!(log.refreshes.len(), 1);
    let resumed = &log.requests[before];
    assert_eq!(
        resumed["authorization"],
        format!("Bearer {second}"),
        "the request after the refresh is the first with the new token: none was made meanwhile"
    );
    assert_eq!(resumed["lastEventId"], cursor("s1", had));
    js.close().await;
}

#[tokio::test]
async fn node_refreshes_an_expired_token_and_resumes() {
    an_expired_token_is_refreshed_and_the_stream_resumes(Runtime::Node).await;
}

#[tokio::test]
async fn chromium_refreshes_an_expired_token_and_resumes() {
    an_expired_token_is_refreshed_and_the_stream_resumes(Runtime::Chromium).await;
}

#[tokio::test]
async fn firefox_refreshes_an_expired_token_and_resumes() {
    an_expired_token_is_refreshed_and_the_stream_resumes(Runtime::Firefox).await;
}

#[tokio::test]
async fn webkit_refreshes_an_expired_token_and_resumes() {
    an_expired_token_is_refreshed_and_the_stream_resumes(Runtime::WebKit).await;
}

/// A token that does not cover the task is `403`, reported as `auth`; when the refreshed token
/// is refused too, the client does not ask again nor retry, but waits until the application
/// resumes it with a token that works.
async fn a_token_refused_twice_waits_for_the_application(runtime: Runtime) {
    let server = TestServer::start(with_auth(config())).await;
    server.task("t", "InProgress").await;
    write(&server, 0, 2).await;
    let mut js = JsClients::start(runtime, &base(&server), 1).await;
    js.follow(
        0,
        "t",
        options(json!({ "token": token(&["other"], 60), "refresh": true })),
    )
    .await;
    let log = js
        .wait_until("a refresh", WAIT, |logs| !logs[0].refreshes.is_empty())
        .await[0]
        .clone();
    assert_eq!(log.refreshes[0]["status"], 403);

    let wrong = token(&["another"], 60);
    js.command(0, json!({ "cmd": "token", "client": 0, "token": wrong }))
        .await;
    let waiting = |log: &ClientLog| {
        log.requests.len() == 2
            && log.states.last().is_some_and(|state| {
                state["name"] == "auth" && state["status"] == 403 && state["refreshing"] == false
            })
    };
    js.wait_until("the second refusal", WAIT, |logs| waiting(&logs[0]))
        .await;

    let good = token(&["t"], 60);
    js.command(0, json!({ "cmd": "resume", "client": 0, "token": good }))
        .await;
    js.wait_until("2 events", WAIT, all_received(2)).await;
    server.status("t", "Done").await;
    let log = js.wait_for_all("complete", WAIT).await[0].clone();

    assert_delivered(&log, &committed(&server.db, "t").await, "the client");
    assert_eq!(log.refreshes.len(), 1, "asked for a token once");
    let tokens: Vec<&Value> = log.requests.iter().map(|r| &r["authorization"]).collect();
    assert_eq!(
        tokens,
        [
            &json!(format!("Bearer {}", log_token(&log, 0))),
            &json!(format!("Bearer {wrong}")),
            &json!(format!("Bearer {good}")),
        ],
        "no request between the second refusal and resume()"
    );
    js.close().await;
}

/// The token of the `n`th request of `log`.
fn log_token(log: &ClientLog, n: usize) -> String {
    let header = log.requests[n]["authorization"].as_str().expect("a token");
    header.trim_start_matches("Bearer ").to_owned()
}

#[tokio::test]
async fn node_waits_for_the_application_after_a_second_refusal() {
    a_token_refused_twice_waits_for_the_application(Runtime::Node).await;
}

#[tokio::test]
async fn chromium_waits_for_the_application_after_a_second_refusal() {
    a_token_refused_twice_waits_for_the_application(Runtime::Chromium).await;
}

#[tokio::test]
async fn firefox_waits_for_the_application_after_a_second_refusal() {
    a_token_refused_twice_waits_for_the_application(Runtime::Firefox).await;
}

#[tokio::test]
async fn webkit_waits_for_the_application_after_a_second_refusal() {
    a_token_refused_twice_waits_for_the_application(Runtime::WebKit).await;
}

// === Every event type ===

/// Stored events of the protocol's types, of types nobody named, and of reserved names: each
/// reaches the one callback with its task, cursor, name and data as the server maps them, and
/// a handler of one type gets only that type.
async fn every_event_type_reaches_the_one_callback(runtime: Runtime) {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    let stored = [
        ("assistant", "hello"),
        ("thinking", "hmm"),
        ("Custom Type!", "x"),
        ("complete", "stored by an agent"),
        ("message", "m"),
        ("error", "boom"),
        ("toolcall", "bash: ls"),
        ("open", "o"),
    ];
    for (kind, content) in stored {
        server.event("t", "s1", kind, content).await;
    }
    let mut js = JsClients::start(runtime, &base(&server), 1).await;
    let types = json!(["custom_type_", "error"]);
    js.follow(0, "t", options(json!({ "types": types }))).await;
    js.wait_until("every stored event", WAIT, all_received(stored.len()))
        .await;
    server.status("t", "Done").await;
    let log = js.wait_for_all("complete", WAIT).await[0].clone();

    let mut expected: Vec<Value> = stored
        .iter()
        .zip(1..)
        .map(|((kind, content), seq)| {
            json!({
                "task": "t",
                "id": cursor("s1", seq),
                "type": event::event_name(kind),
                "data": event::event_data(kind, content),
            })
        })
        .collect();
    expected.push(json!({
        "task": "t",
        "id": format!("{}:c", cursor("s1", stored.len() as i64)),
        "type": "complete",
        "data": {},
    }));
    assert_eq!(log.events, expected);
    assert_eq!(
        log.typed,
        [
            json!({ "type": "custom_type_", "id": cursor("s1", 3) }),
            json!({ "type": "error", "id": cursor("s1", 6) }),
        ]
    );
    js.close().await;
}

#[tokio::test]
async fn node_receives_every_event_type() {
    every_event_type_reaches_the_one_callback(Runtime::Node).await;
}

#[tokio::test]
async fn chromium_receives_every_event_type() {
    every_event_type_reaches_the_one_callback(Runtime::Chromium).await;
}

#[tokio::test]
async fn firefox_receives_every_event_type() {
    every_event_type_reaches_the_one_callback(Runtime::Firefox).await;
}

#[tokio::test]
async fn webkit_receives_every_event_type() {
    every_event_type_reaches_the_one_callback(Runtime::WebKit).await;
}

// === Exactly once ===

/// A writer inserts events of several types while the server ends every stream after a short
/// lifetime, so each client resumes again and again: each ends with exactly the committed
/// rows, in order, once each.
async fn every_committed_event_arrives_exactly_once(runtime: Runtime, clients: usize) {
    let churn = Config {
        max_stream_lifetime: Some(Duration::from_millis(500)),
        retry: Duration::from_millis(200),
        ..config()
    };
    let server = TestServer::start(churn).await;
    server.task("t", "InProgress").await;
    let mut js = JsClients::start(runtime, &base(&server), clients).await;
    js.follow_all("t", options(json!({}))).await;

    let db = connect(&server.url).await;
    let writer = tokio::spawn(async move {
        for i in 0..200 {
            let kind = ["assistant", "thinking", "Note"][i % 3];
            insert_event(&db, "t", "s1", kind, &format!("e {i}")).await;
        }
    });
    js.wait_until("three streams each", SETTLE, |logs| {
        logs.iter().all(|log| log.requests.len() >= 3)
    })
    .await;
    writer.await.expect("the writer");
    server.status("t", "Done").await;
    let logs = js.wait_for_all("complete", SETTLE).await.to_vec();

    let expected = committed(&server.db, "t").await;
    assert_eq!(expected.len(), 200);
    for (i, log) in logs.iter().enumerate() {
        assert_delivered(log, &expected, &format!("client {i}"));
    }
    js.close().await;
}

#[tokio::test]
async fn node_receives_every_committed_event_exactly_once() {
    every_committed_event_arrives_exactly_once(Runtime::Node, 4).await;
}

#[tokio::test]
async fn chromium_receives_every_committed_event_exactly_once() {
    every_committed_event_arrives_exactly_once(Runtime::Chromium, 2).await;
}

#[tokio::test]
async fn firefox_receives_every_committed_event_exactly_once() {
    every_committed_event_arrives_exactly_once(Runtime::Firefox, 2).await;
}

#[tokio::test]
async fn webkit_receives_every_committed_event_exactly_once() {
    every_committed_event_arrives_exactly_once(Runtime::WebKit, 2).await;
}

// === The parser ===

/// What a parser made of some bytes: the events as `(id, type, data)`, the last valid
/// `retry`, and the comments.
#[derive(Debug, PartialEq)]
struct Parsed {
    events: Vec<(String, String, String)>,
    retry: Option<u64>,
    comments: Vec<String>,
}

/// The Rust test parser's reading of `chunks`, fed one after the other.
fn in_rust(chunks: &[&[u8]]) -> Parsed {
    let mut parser = SseParser::default();
    let events = chunks
        .iter()
        .flat_map(|chunk| parser.feed(chunk))
        .map(|e| (e.id, e.event, e.data))
        .collect();
    Parsed {
        events,
        retry: parser.retry,
        comments: parser.comments,
    }
}

/// taskstream.js's reading of `chunks`, in Node.
async fn in_node(node: &mut Script, chunks: &[&[u8]]) -> Parsed {
    let encoded: Vec<String> = chunks.iter().map(|chunk| BASE64.encode(chunk)).collect();
    node.send(&json!({ "chunks": encoded })).await;
    let result = node.next().await;
    let text = |value: &Value| value.as_str().expect("a string").to_owned();
    Parsed {
        events: result["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| (text(&e["id"]), text(&e["type"]), text(&e["data"])))
            .collect(),
        retry: result["retries"]
            .as_array()
            .and_then(|r| r.last()?.as_u64()),
        comments: result["comments"]
            .as_array()
            .expect("comments")
            .iter()
            .map(text)
            .collect(),
    }
}

/// `bytes` cut into pieces in every way that matters: whole, byte by byte, in two at every
/// position (inside each UTF-8 character and each CRLF pair), and in pieces of 7.
fn chunkings(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut ways = vec![
        vec![bytes],
        bytes.chunks(1).collect(),
        bytes.chunks(7).collect(),
    ];
    for at in 1..bytes.len() {
        ways.push(vec![&bytes[..at], &bytes[at..]]);
    }
    ways
}

/// One event, for expectations.
fn ev(id: &str, kind: &str, data: &str) -> (String, String, String) {
    (id.to_owned(), kind.to_owned(), data.to_owned())
}

/// The WHATWG cases: each input, cut in every way, is read by taskstream.js exactly as
/// expected and exactly as the Rust test parser reads it.
#[tokio::test]
async fn the_parser_reads_the_whatwg_cases_in_node() {
    let cases: Vec<(&str, &[u8], Parsed)> = vec![
        (
            "BOM, CR / LF / CRLF, comment, retry, multi-line data, field without colon",
            b"\xEF\xBB\xBFretry: 5\r\n: hi\rid: 1\nevent: x\ndata: a\r\ndata:b\n\ndata\n\n",
            Parsed {
                events: vec![ev("1", "x", "a\nb"), ev("1", "message", "")],
                retry: Some(5),
                comments: vec![" hi".into()],
            },
        ),
        (
            "an id with NUL is ignored; an id without value resets it",
            b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\nid\ndata: c\n\n",
            Parsed {
                events: vec![
                    ev("1", "message", "a"),
                    ev("1", "message", "b"),
                    ev("", "message", "c"),
                ],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "retry counts only as ASCII digits",
            "retry: 7\n\nretry: 8x\nretry:\nretry: -1\nretry:  9\nretry: 1.5\nretry: \u{663}\n\n"
                .as_bytes(),
            Parsed {
                events: vec![],
                retry: Some(7),
                comments: vec![],
            },
        ),
        (
            "data lines join with LF; one space after the colon is dropped",
            b"data: one\ndata:  two\r\ndata\rdata: three\n\n",
            Parsed {
                events: vec![ev("", "message", "one\n two\n\nthree")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "comments and unknown fields dispatch nothing; a block without data resets the type",
            b": first\n:\nfoo: bar\nevent: x\n\ndata: y\n\n",
            Parsed {
                events: vec![ev("", "message", "y")],
                retry: None,
                comments: vec![" first".into(), "".into()],
            },
        ),
        (
            "the type resets after each event, the id persists",
            b"event: a\nid: 7\ndata: 1\n\ndata: 2\n\n",
            Parsed {
                events: vec![ev("7", "a", "1"), ev("7", "message", "2")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "an event without its blank line is not dispatched",
            b"data: whole\n\ndata: partial\n",
            Parsed {
                events: vec![ev("", "message", "whole")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "a BOM counts only at the start",
            b"data: a\n\n\xEF\xBB\xBFdata: b\n\n",
            Parsed {
                events: vec![ev("", "message", "a")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "CR alone ends lines, CR CR ends an event",
            b"data: a\r\rdata: b\r\r",
            Parsed {
                events: vec![ev("", "message", "a"), ev("", "message", "b")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "UTF-8 characters of every length",
            "event: ünï\ndata: ✓ 🚀 é\r\n\r\n".as_bytes(),
            Parsed {
                events: vec![ev("", "ünï", "✓ 🚀 é")],
                retry: None,
                comments: vec![],
            },
        ),
        (
            "invalid UTF-8 becomes U+FFFD",
            b"data: a\xFFb\n\n",
            Parsed {
                events: vec![ev("", "message", "a\u{FFFD}b")],
                retry: None,
                comments: vec![],
            },
        ),
    ];
    let mut node = Script::spawn(node("parse.mjs"), "parse.mjs");
    for (name, bytes, expected) in &cases {
        assert_eq!(&in_rust(&[bytes]), expected, "the Rust parser: {name}");
        for chunks in chunkings(bytes) {
            let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
            assert_eq!(
                &in_node(&mut node, &chunks).await,
                expected,
                "{name}, in chunks of {sizes:?}"
            );
        }
    }
    let status = node.exit().await;
    assert!(status.success(), "parse.mjs exited with {status}");
}

/// What the server's encoder writes (hostile values, 1 MB of data, and arbitrary strings) is
/// read by taskstream.js exactly as the Rust test parser reads it, in awkward chunk sizes.
#[tokio::test]
async fn the_parser_reads_the_encoder_like_the_rust_parser_in_node() {
    let big = "0123456789abcdef".repeat(65_536);
    let mut frames: Vec<Vec<u8>> = [
        ("YQ:1", "assistant", "{\"content\":\"line one\\nline two\"}"),
        ("YQ:2", "x", "multi\nline\r\ndata\rhere"),
        ("YQ:3", "q", "quotes \" and \\, ünïcode ✓, emoji 🚀"),
        ("YQ:4", "big", big.as_str()),
        ("YQ:5", "empty", ""),
        ("bad\r\nid\0", "bad\nname", "nul \0 inside"),
    ]
    .iter()
    .map(|(id, name, data)| sse::event(id, name, data).to_vec())
    .collect();
    let mut runner = TestRunner::deterministic();
    let strings = (any::<String>(), any::<String>(), any::<String>());
    for _ in 0..100 {
        let (id, name, data) = strings.new_tree(&mut runner).expect("values").current();
        frames.push(sse::event(&id, &name, &data).to_vec());
    }
    frames.push(sse::retry(1500).to_vec());
    frames.push(sse::KEEP_ALIVE.to_vec());
    let wire: Vec<u8> = frames.concat();

    let mut node = Script::spawn(node("parse.mjs"), "parse.mjs");
    for size in [7, 4096, 65_536, wire.len()] {
        let chunks: Vec<&[u8]> = wire.chunks(size).collect();
        let rust = in_rust(&chunks);
        assert_eq!(rust.events.len(), frames.len() - 2);
        assert_eq!(
            in_node(&mut node, &chunks).await,
            rust,
            "chunks of {size} bytes"
        );
    }
    let status = node.exit().await;
    assert!(status.success(), "parse.mjs exited with {status}");
}
