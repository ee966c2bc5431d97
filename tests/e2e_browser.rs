//! The viewer in a real browser: headless Chromium (Debian's) loads the pages from a server on
//! loopback, and the task page follows the stream with the project's client, taskstream.js
//! (its own behaviour is proved in `e2e_js_client`). Proves that events appear in order as
//! cards shaped by kind, that a type the page does not know gets a generic card with its name
//! and data, that `complete` shows and ends the stream, that the page resumes with
//! `Last-Event-ID` after the server restarts with no card lost or repeated, that refused
//! streams (`503` when the server is full, `401` when the token expired) are shown and handled,
//! that the page follows new cards only while the reader is at the end, and that hostile
//! content stays text. Saves `target/viewer.png` and `target/viewer-phone.png` for people to
//! look at.
//!
//! Run with `cargo test --features e2e --test e2e_browser`; needs Node, `npm ci --prefix
//! tests/e2e` and the `chromium` package (`.ci/run` installs them).

#![cfg(feature = "e2e")]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::auth::{token, with_auth};
use support::e2e::{Browser, PAGE_STATE};
use support::ledger::{cursor, numbered};
use support::server::{TestServer, fast_config};
use taskstream::Config;

const HOSTILE: &str = r#"<script>window.pwned=1</script><img src=x onerror="window.pwned=2">"#;

/// The test configuration, with a short drain deadline: a restarting server closes its
/// streams spread over the first half of it, and the tests wait for that.
fn config() -> Config {
    Config {
        drain_deadline: Duration::from_secs(1),
        ..fast_config()
    }
}

/// The URL of `path` on `server`.
fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

/// The cards on the page.
async fn cards(browser: &mut Browser) -> Vec<Value> {
    let state = browser.eval(PAGE_STATE).await;
    state["cards"].as_array().expect("cards").clone()
}

/// One field of every card.
fn field(cards: &[Value], name: &str) -> Vec<String> {
    cards
        .iter()
        .map(|card| card[name].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Whether the page shows `n` cards, as a JavaScript expression.
fn shows_cards(n: usize) -> String {
    format!("document.querySelectorAll('#events .card').length >= {n}")
}

/// Whether the page's status line is in `state`, as a JavaScript expression.
fn in_state(state: &str) -> String {
    format!("document.getElementById('state').dataset.state === '{state}'")
}

/// Waits until the page shows `n` cards.
async fn wait_for_cards(browser: &mut Browser, n: usize) {
    browser
        .wait_for(&format!("{n} cards"), &shows_cards(n))
        .await;
}

/// Waits until the page's status line is in `state`.
async fn wait_for_state(browser: &mut Browser, state: &str) {
    browser
        .wait_for(&format!("state {state}"), &in_state(state))
        .await;
}

/// Waits until `js` is true in the page, for up to `deadline` (longer than one
/// [`Browser::wait_for`]: for waits that follow the page's growing backoff).
async fn wait_longer(browser: &mut Browser, what: &str, js: &str, deadline: Duration) {
    let until = std::time::Instant::now() + deadline;
    while browser.eval(js).await != Value::Bool(true) {
        let state = browser.eval(PAGE_STATE).await;
        assert!(
            std::time::Instant::now() < until,
            "no {what} after {deadline:?}: the page shows {state}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server with task `t` in progress and events `e 0` … `e n-1` in session `s1`, and a
/// browser on the task's page showing them.
async fn watching(n: usize) -> (TestServer, Browser) {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", n).await;
    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, n).await;
    (server, browser)
}

/// Fails the test if the page threw or logged an error (`allowed`: console errors expected
/// from refused requests).
async fn assert_no_page_errors(browser: &mut Browser, allowed: &[&str]) {
    let errors: Vec<String> = browser
        .errors()
        .await
        .into_iter()
        .filter(|error| !allowed.iter().any(|a| error.contains(a)))
        .collect();
    assert!(errors.is_empty(), "page errors: {errors:#?}");
}

/// Events arrive in order as cards shaped by kind (assistant text, tool call with tool and
/// arguments, tool result with success or failure and output, cost, an agent error in its own
/// style, which is not taken for a connection error); live events follow; `complete` shows
/// and the stream ends without a reconnect.
#[tokio::test]
async fn events_appear_in_order_as_cards_and_complete_closes_the_stream() {
    let server = TestServer::start(config()).await;
    server
        .db
        .execute(
            "INSERT INTO tasks (id, title, status) VALUES ('login', $1, 'InProgress')",
            &[&"Fix the flaky login test"],
        )
        .await
        .expect("task");
    let session = "login-s1";
    let script = [
        (
            "assistant",
            "The login test fails about one run in ten. Let me read it first.",
        ),
        (
            "toolcall",
            r#"{"tool":"read_file","args":{"path":"tests/login.rs","lines":"1-80"}}"#,
        ),
        (
            "toolresult",
            r##"{"tool":"read_file","success":true,"output":"#[tokio::test]\nasync fn login_retries() {\n    let server = start().await;\n    sleep(Duration::from_millis(50)).await;\n    assert!(server.ready());\n}"}"##,
        ),
        (
            "assistant",
            "It sleeps 50 ms and hopes the server is ready. I will wait for readiness instead.",
        ),
        (
            "toolcall",
            r#"{"tool":"bash","args":{"command":"cargo test login_retries -- --nocapture"}}"#,
        ),
        (
            "toolresult",
            r#"{"tool":"bash","success":false,"output":"test login_retries ... FAILED\nassertion failed: server.ready()"}"#,
        ),
        ("error", "cargo test: 1 test failed (login_retries)"),
        ("cost", "0.0132"),
    ];
    for (kind, content) in script {
        server.event("login", session, kind, content).await;
    }

    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/tasks/login")).await;
    wait_for_cards(&mut browser, script.len()).await;
    wait_for_state(&mut browser, "live").await;
    let shown = cards(&mut browser).await;
    let expected_ids: Vec<String> = (1..=8).map(|seq| cursor(session, seq)).collect();
    assert_eq!(field(&shown, "id"), expected_ids);
    assert_eq!(
        field(&shown, "type"),
        [
            "assistant",
            "toolcall",
            "toolresult",
            "assistant",
            "toolcall",
            "toolresult",
            "error",
            "cost"
        ]
    );
    assert_eq!(shown[0]["body"], script[0].1);
    assert_eq!(shown[1]["tool"], "read_file");
    let args: Value = serde_json::from_str(shown[1]["body"].as_str().expect("args")).expect("JSON");
    assert_eq!(args["path"], "tests/login.rs");
    assert!(
        shown[1]["body"]
            .as_str()
            .expect("args")
            .contains("\n  \"path\""),
        "pretty JSON"
    );
    assert_eq!(shown[2]["outcome"], "✓ success");
    assert!(
        shown[2]["body"]
            .as_str()
            .expect("output")
            .contains("fn login_retries() {\n")
    );
    assert_eq!(shown[5]["outcome"], "✗ failed");
    assert_eq!(shown[6]["kind"], "Error");
    assert_eq!(
        shown[6]["body"],
        "cargo test: 1 test failed (login_retries)"
    );
    assert_eq!(shown[7]["body"], "0.0132");
    let error_style = browser
        .eval("getComputedStyle(document.querySelector('.card-error')).backgroundColor !== getComputedStyle(document.querySelector('.card-assistant')).backgroundColor")
        .await;
    assert_eq!(error_style, Value::Bool(true), "an error card stands out");
    // The agent's error event did not look like a lost connection.
    assert_eq!(browser.eval(PAGE_STATE).await["state"], "live");

    // Live events follow in order.
    let live = [
        (
            "assistant",
            "Replaced the sleep with a wait for readiness; the test passed 200 times in a row.",
        ),
        (
            "toolcall",
            "bash: git commit -am 'login test: wait for readiness'",
        ),
    ];
    for (kind, content) in live {
        server.event("login", session, kind, content).await;
    }
    wait_for_cards(&mut browser, 10).await;
    let shown = cards(&mut browser).await;
    assert_eq!(shown[8]["body"], live[0].1);
    assert_eq!(shown[9]["tool"], "bash");
    assert_eq!(
        field(&shown, "id")[8..],
        [cursor(session, 9), cursor(session, 10)]
    );

    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    // Tall enough for every card, so the sticky header stays at the top of the picture.
    browser.viewport(1000, 1300).await;
    browser.eval("window.scrollTo(0, 0)").await;
    browser.screenshot(&target.join("viewer.png"), false).await;
    browser.viewport(390, 760).await;
    browser
        .screenshot(&target.join("viewer-phone.png"), false)
        .await;

    server.status("login", "Review").await;
    wait_for_state(&mut browser, "complete").await;
    assert_eq!(
        cards(&mut browser).await.len(),
        10,
        "complete is not a card"
    );
    let requests = browser.stream_requests().await;
    assert_eq!(requests.len(), 1, "one stream, no reconnect: {requests:?}");
    assert_no_page_errors(&mut browser, &[]).await;
    browser.close().await;
}

/// Every event type gets a card: types the page does not know (an agent's own, and stored names
/// that the protocol reserves) get a generic card with their name and their data.
#[tokio::test]
async fn an_unknown_event_type_gets_a_generic_card() {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    let stored = [
        ("Custom Type!", "something new"),
        ("complete", "stored by an agent"),
        ("message", "a message"),
        ("assistant", "known"),
    ];
    for (kind, content) in stored {
        server.event("t", "s1", kind, content).await;
    }
    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, stored.len()).await;

    let shown = cards(&mut browser).await;
    assert_eq!(
        field(&shown, "type"),
        [
            "custom_type_",
            "agent_complete",
            "agent_message",
            "assistant"
        ]
    );
    assert_eq!(
        field(&shown, "kind"),
        [
            "custom_type_",
            "agent_complete",
            "agent_message",
            "Assistant"
        ],
        "an unknown type is labelled by its name"
    );
    assert_eq!(
        field(&shown, "body"),
        ["something new", "{}", "a message", "known"],
        "its data: the content, or the data itself"
    );
    let generic = browser
        .eval("[...document.querySelectorAll('#events .card')].map(c => c.classList.contains('card-other'))")
        .await;
    assert_eq!(generic, serde_json::json!([true, true, true, false]));
    assert_no_page_errors(&mut browser, &[]).await;
    browser.close().await;
}

/// When the server restarts mid-stream (a deploy: it ends every stream), the page reconnects
/// by itself with `Last-Event-ID`, and ends with every event once, in order.
#[tokio::test]
async fn the_browser_resumes_with_last_event_id_after_a_server_restart() {
    let (server, mut browser) = watching(5).await;

    let server = server.restart(config()).await;
    for i in 5..10 {
        server
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
    }
    wait_for_cards(&mut browser, 10).await;
    server.status("t", "Done").await;
    wait_for_state(&mut browser, "complete").await;

    let shown = cards(&mut browser).await;
    assert_eq!(
        field(&shown, "body"),
        numbered("e", 0..10),
        "each event once, in order"
    );
    let ids: Vec<String> = (1..=10).map(|seq| cursor("s1", seq)).collect();
    assert_eq!(field(&shown, "id"), ids);

    let requests = browser.stream_requests().await;
    assert!(requests.iter().all(|r| r.kind == "fetch"), "{requests:?}");
    assert!(requests.len() >= 2, "the browser reconnected: {requests:?}");
    assert_eq!(requests[0].last_event_id, None);
    for request in &requests[1..] {
        assert_eq!(
            request.last_event_id.as_deref(),
            Some(cursor("s1", 5).as_str()),
            "{requests:?}"
        );
    }
    assert_no_page_errors(&mut browser, &["ERR_CONNECTION_REFUSED"]).await;
    browser.close().await;
}

/// A stream refused with `503` (here: the server is full) is retried by the page with backoff,
/// from its last cursor, since EventSource gives up for good on any status but 200; nothing is
/// lost or repeated.
#[tokio::test]
async fn a_503_is_retried_with_backoff_from_the_last_cursor() {
    // One stream at most, and a long `retry:` hint (the page waits at least half of it), so
    // that the test's own stream surely takes the only slot before the page reconnects.
    let full = || Config {
        max_streams: 1,
        retry: Duration::from_secs(8),
        ..config()
    };
    let server = TestServer::start(full()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 3).await;
    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, 3).await;

    let server = server.restart(full()).await;
    let hog = server.stream("t").await;
    assert_eq!(hog.status, 200, "the test's stream took the only slot");
    // The page's backoff grows from the long `retry:`: an attempt may be 16 s away.
    let backoff = Duration::from_secs(60);
    let refused = in_state("unavailable");
    wait_longer(&mut browser, "a refused attempt", &refused, backoff).await;
    let text = browser.eval(PAGE_STATE).await["text"].clone();
    assert!(
        text.as_str().expect("text").contains("retrying in"),
        "{text}"
    );
    for i in 3..6 {
        server
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
    }
    drop(hog);
    wait_longer(&mut browser, "6 cards", &shows_cards(6), backoff).await;
    server.status("t", "Done").await;
    wait_for_state(&mut browser, "complete").await;

    let shown = cards(&mut browser).await;
    assert_eq!(
        field(&shown, "body"),
        numbered("e", 0..6),
        "each event once, in order"
    );
    let requests = browser.stream_requests().await;
    assert!(
        requests.len() >= 3,
        "the stream, a refused attempt, the resumed stream: {requests:?}"
    );
    for request in &requests[1..] {
        assert_eq!(
            request.last_event_id.as_deref(),
            Some(cursor("s1", 3).as_str()),
            "every attempt resumes at the last card: {requests:?}"
        );
    }
    assert_no_page_errors(&mut browser, &["503", "ERR_CONNECTION_REFUSED"]).await;
    browser.close().await;
}

/// When the reader's token expires, the server ends the stream and refuses the reconnect with
/// `401`: the page shows a clear "sign in again" state and stops retrying. With a new token,
/// "Try again" resumes from the last card, with the next request.
#[tokio::test]
async fn an_expired_token_asks_to_sign_in_again() {
    let server = TestServer::start(with_auth(config())).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 2).await;

    let mut browser = Browser::launch().await;
    browser
        .set_cookie(&url(&server, "/"), "taskstream_token", &token(&["t"], 4))
        .await;
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, 2).await;
    wait_for_state(&mut browser, "signin").await;
    let state = browser.eval(PAGE_STATE).await;
    assert!(
        state["text"]
            .as_str()
            .expect("text")
            .contains("sign in again"),
        "{state}"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('again').hidden")
            .await,
        Value::Bool(false)
    );
    let refused = browser.stream_requests().await.len();

    browser
        .set_cookie(&url(&server, "/"), "taskstream_token", &token(&["t"], 60))
        .await;
    server.event("t", "s1", "assistant", "e 2").await;
    browser.click("#again").await;
    wait_for_cards(&mut browser, 3).await;
    wait_for_state(&mut browser, "live").await;
    assert_eq!(
        field(&cards(&mut browser).await, "body"),
        numbered("e", 0..3)
    );
    let requests = browser.stream_requests().await;
    assert_eq!(
        requests.len(),
        refused + 1,
        "no retry while signed out, one request after Try again: {requests:?}"
    );
    assert_eq!(
        requests[refused].last_event_id.as_deref(),
        Some(cursor("s1", 2).as_str())
    );
    assert_no_page_errors(&mut browser, &["401"]).await;
    browser.close().await;
}

/// With authentication on and no token, the viewer asks to sign in: a wrong token is refused
/// with a message, a valid one is handed to `POST /session` (the page never sees the cookie,
/// which is HttpOnly) and the page reloads into the task list the token covers.
#[tokio::test]
async fn the_sign_in_page_turns_a_token_into_a_session() {
    let server = TestServer::start(with_auth(config())).await;
    for id in ["mine", "other"] {
        server.task(id, "Open").await;
    }

    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/")).await;
    browser
        .wait_for(
            "the sign-in form",
            "document.getElementById('signin') !== null",
        )
        .await;
    let fill = |token: &str| {
        format!(
            "(document.getElementById('token').value = {}, true)",
            serde_json::to_string(token).expect("a JSON string")
        )
    };
    browser.eval(&fill("not-a-token")).await;
    browser.click("#signin button").await;
    let refused = browser
        .wait_for(
            "the refusal",
            "document.getElementById('signin-status').textContent.includes('not valid') \
             && document.getElementById('signin-status').textContent",
        )
        .await;
    assert!(
        refused.as_str().is_some_and(|t| t.contains("not valid")),
        "{refused}"
    );

    browser.eval(&fill(&token(&["mine"], 60))).await;
    browser.click("#signin button").await;
    let links = browser
        .wait_for(
            "the task list",
            "document.querySelectorAll('ul.tasks li').length > 0 \
             && [...document.querySelectorAll('ul.tasks .id')].map(e => e.textContent)",
        )
        .await;
    assert_eq!(links, serde_json::json!(["mine"]), "only the covered task");
    assert_eq!(
        browser.eval("document.cookie").await,
        Value::String(String::new()),
        "the token cookie is HttpOnly"
    );
    assert_no_page_errors(&mut browser, &["401"]).await;
    browser.close().await;
}

/// New cards scroll into view while the reader is at the end of the page; once the reader
/// scrolls up, the page stays put and offers a button to jump to the newest card.
#[tokio::test]
async fn the_page_follows_new_cards_until_the_reader_scrolls_up() {
    let server = TestServer::start(config()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 30).await;

    let mut browser = Browser::launch().await;
    browser.viewport(390, 600).await;
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, 30).await;
    let at_end = "window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 2";
    browser.wait_for("the page to follow", at_end).await;

    browser.eval("window.scrollTo(0, 0)").await;
    server.event("t", "s1", "assistant", "e 30").await;
    wait_for_cards(&mut browser, 31).await;
    assert_eq!(
        browser.eval("window.scrollY").await,
        0,
        "stays where the reader is"
    );
    assert_eq!(
        browser.eval("document.getElementById('jump').hidden").await,
        Value::Bool(false)
    );

    browser.click("#jump").await;
    browser.wait_for("a jump to the end", at_end).await;
    server.event("t", "s1", "assistant", "e 31").await;
    wait_for_cards(&mut browser, 32).await;
    browser.wait_for("the page to follow again", at_end).await;
    assert_no_page_errors(&mut browser, &[]).await;
    browser.close().await;
}

/// Markup in titles and in every kind of event content shows as literal text: no element is
/// created from it and no script runs.
#[tokio::test]
async fn hostile_content_renders_as_text() {
    let server = TestServer::start(config()).await;
    server
        .db
        .execute(
            "INSERT INTO tasks (id, title, status) VALUES ('t', $1, 'InProgress')",
            &[&HOSTILE],
        )
        .await
        .expect("task");
    let tool_call = serde_json::json!({ "tool": HOSTILE, "args": { "x": HOSTILE } }).to_string();
    let tool_result =
        serde_json::json!({ "tool": "bash", "success": true, "output": HOSTILE }).to_string();
    for (kind, content) in [
        ("assistant", HOSTILE),
        ("toolcall", tool_call.as_str()),
        ("toolresult", tool_result.as_str()),
        ("error", HOSTILE),
        ("cost", HOSTILE),
        ("thinking", HOSTILE),
    ] {
        server.event("t", "s1", kind, content).await;
    }

    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/")).await;
    assert_eq!(
        browser
            .eval("document.querySelector('.tasks .title').textContent")
            .await,
        HOSTILE
    );
    browser.goto(&url(&server, "/tasks/t")).await;
    wait_for_cards(&mut browser, 6).await;
    let shown = cards(&mut browser).await;
    assert_eq!(shown[0]["body"], HOSTILE);
    assert_eq!(shown[1]["tool"], HOSTILE);
    assert!(
        shown[1]["body"]
            .as_str()
            .expect("args")
            .contains("<script>")
    );
    assert_eq!(shown[2]["body"], HOSTILE);
    assert_eq!(shown[3]["body"], HOSTILE);
    assert_eq!(shown[4]["body"], HOSTILE);
    assert_eq!(shown[5]["body"], HOSTILE);
    assert_eq!(shown[5]["kind"], "thinking");
    assert_eq!(
        browser
            .eval("document.querySelector('h1').textContent")
            .await,
        HOSTILE
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('main script, main img, h1 *').length")
            .await,
        0
    );
    assert_eq!(browser.eval("typeof window.pwned").await, "undefined");
    assert_no_page_errors(&mut browser, &[]).await;
    browser.close().await;
}

/// The watch page's cards, per task, in page order: `{task: [body, …]}`.
const LANES: &str = "Object.fromEntries([...document.querySelectorAll('.lane')].map(lane => [
    lane.dataset.task,
    [...lane.querySelectorAll('.card .body')].map(body => body.textContent),
]))";

/// Whether the watch page shows at least `n` cards, as a JavaScript expression.
fn watch_shows(n: usize) -> String {
    format!("document.querySelectorAll('.lane .card').length >= {n}")
}

/// A watch page of 20 running tasks, more than the six connections per host that HTTP/1.1
/// allows single streams, follows them all over one multi-task stream: every card of every task
/// arrives, in order per task, through a server restart (the page resumes by the stream's one
/// cursor), and each task's end shows.
#[tokio::test]
async fn a_watch_page_of_twenty_tasks_shows_every_card_through_a_restart() {
    let server = TestServer::start(config()).await;
    let tasks: Vec<String> = (0..20).map(|i| format!("w{i:02}")).collect();
    for task in &tasks {
        server.task(task, "InProgress").await;
        server.events(task, &format!("{task}-s1"), task, 3).await;
    }
    let query: Vec<String> = tasks.iter().map(|t| format!("task={t}")).collect();
    let mut browser = Browser::launch().await;
    browser
        .goto(&url(&server, &format!("/watch?{}", query.join("&"))))
        .await;
    browser.wait_for("60 cards", &watch_shows(60)).await;

    let server = server.restart(config()).await;
    for i in 3..6 {
        for task in &tasks {
            let content = format!("{task} {i}");
            server
                .event(task, &format!("{task}-s1"), "assistant", &content)
                .await;
        }
    }
    browser.wait_for("120 cards", &watch_shows(120)).await;
    for task in &tasks {
        server.status(task, "Done").await;
    }
    wait_for_state(&mut browser, "complete").await;

    let lanes = browser.eval(LANES).await;
    for task in &tasks {
        let shown: Vec<String> = lanes[task]
            .as_array()
            .unwrap_or_else(|| panic!("no lane for {task}: {lanes}"))
            .iter()
            .map(|body| body.as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            shown,
            numbered(task, 0..6),
            "{task}: each card once, in order"
        );
    }
    let ended = browser
        .eval("document.querySelectorAll('.lane[data-state=\"complete\"]').length")
        .await;
    assert_eq!(ended, 20, "every task's end shows");

    let requests = browser.stream_requests().await;
    assert!(requests.len() >= 2, "the page reconnected: {requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.kind == "fetch" && r.url.contains("/events/stream?task=w00&")),
        "one multi-task stream at a time, never one per task: {requests:?}"
    );
    assert_eq!(requests[0].last_event_id, None);
    assert!(
        requests[1..].iter().all(|r| r.last_event_id.is_some()),
        "resumed by cursor: {requests:?}"
    );
    assert_no_page_errors(&mut browser, &["ERR_CONNECTION_REFUSED"]).await;
    browser.close().await;
}

/// The task list page updates live: a new task appears at the top, a status badge changes,
/// and "watch all running" points at the tasks in progress.
#[tokio::test]
async fn the_task_list_updates_live() {
    let server = TestServer::start(config()).await;
    server.task("first", "InProgress").await;
    let mut browser = Browser::launch().await;
    browser.goto(&url(&server, "/")).await;
    let watch_href = "document.getElementById('watch-running').getAttribute('href')";
    assert_eq!(browser.eval(watch_href).await, "/watch?task=first");
    browser
        .wait_for(
            "the live list's snapshot",
            "document.getElementById('tasks').dataset.live === 'true'",
        )
        .await;
    server.task("second", "Open").await;
    browser
        .wait_for(
            "the new task on top",
            "document.querySelector('#tasks li')?.dataset.id === 'second'",
        )
        .await;
    server.status("second", "InProgress").await;
    browser
        .wait_for(
            "the new status",
            "document.querySelector('#tasks li .status')?.textContent === 'InProgress'",
        )
        .await;
    browser
        .wait_for(
            "the watch link",
            &format!("{watch_href} === '/watch?task=second&task=first'"),
        )
        .await;
    assert_no_page_errors(&mut browser, &[]).await;
    browser.close().await;
}
