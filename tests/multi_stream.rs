//! Many tasks over one connection (`GET /events/stream?task=…`), end to end over a real socket
//! and a real PostgreSQL: replay, live, `task_complete`, `complete`, `204`, the one cursor
//! across restarts, instances and changed task lists, its size, hostile requests, 403 before
//! 404, and database load that does not grow with clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use support::auth::{token, with_auth};
use support::cluster::connect;
use support::http::Response;
use support::ledger::{assert_same, follow_path, numbered};
use support::server::{TestServer, fast_config};
use support::sse_parser::SseEvent;
use support::wait::eventually;
use support::writer::insert_event;
use taskstream::Config;

/// The path of a multi-task stream of `tasks`.
fn path(tasks: &[&str]) -> String {
    let query: Vec<String> = tasks
        .iter()
        .map(|t| format!("task={}", percent_encode(t)))
        .collect();
    format!("/events/stream?{}", query.join("&"))
}

fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Opens a multi-task stream, resuming from `cursor` if given.
async fn open(addr: SocketAddr, tasks: &[&str], cursor: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = cursor.iter().map(|c| ("last-event-id", *c)).collect();
    Response::get(addr, &path(tasks), &headers).await
}

/// The first session of `task` (session ids are unique across tasks).
fn session(task: &str) -> String {
    format!("{task}-s1")
}

/// The task an event names, and its single-task content.
fn task_and_content(event: &SseEvent) -> (String, String) {
    let json = event.json();
    let task = json["task"].as_str().expect("every frame names its task");
    let content = json["data"]["content"].as_str().unwrap_or_default();
    (task.to_owned(), content.to_owned())
}

/// What one client received, per task, in order.
#[derive(Default, Debug)]
struct PerTask {
    contents: BTreeMap<String, Vec<String>>,
    completed: BTreeMap<String, Value>,
}

impl PerTask {
    fn add(&mut self, event: &SseEvent) {
        if event.event == "task_complete" {
            let json = event.json();
            let task = json["task"].as_str().expect("task").to_owned();
            assert!(
                self.completed
                    .insert(task, json["status"].clone())
                    .is_none(),
                "task_complete twice"
            );
        } else {
            let (task, content) = task_and_content(event);
            assert!(
                !self.completed.contains_key(&task),
                "{task}: an event after task_complete"
            );
            self.contents.entry(task).or_default().push(content);
        }
    }
}

/// Follows a multi-task stream as EventSource would, across every interruption, resuming by
/// its last cursor on the next address of `addrs`. Returns what it received per task.
async fn follow(addrs: &[SocketAddr], tasks: &[&str], cursor: Option<String>) -> PerTask {
    let mut received = PerTask::default();
    follow_path(addrs, &path(tasks), cursor, |event| received.add(&event)).await;
    received
}

/// The contents committed to `task`'s latest session, in seq order (the harness's ledger
/// without its single-task cursors, which a multi-task stream does not give).
async fn committed(db: &tokio_postgres::Client, task: &str) -> Vec<String> {
    let ledger = support::ledger::committed(db, task).await;
    ledger
        .iter()
        .map(|entry| {
            entry
                .split_once(' ')
                .map_or("", |(_, content)| content)
                .to_owned()
        })
        .collect()
}

/// Stored events of every task are replayed, live ones follow, each task ends with its own
/// `task_complete` (with its status, `null` when deleted), and the stream ends with `complete`.
/// Frames carry the single-task name with `{"task", "data"}`.
#[tokio::test]
async fn replays_follows_and_completes_every_task() {
    let server = TestServer::start(fast_config()).await;
    for t in ["a", "b", "c"] {
        server.task(t, "InProgress").await;
    }
    server.events("a", &session("a"), "a", 3).await;
    server.events("b", &session("b"), "b", 2).await;
    server
        .event("c", &session("c"), "toolcall", "bash: ls")
        .await;
    let mut sse = open(server.addr(), &["a", "b", "c", "a"], None).await;
    assert_eq!(sse.status, 200);
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    let mut got = PerTask::default();
    for event in sse.take(6).await {
        got.add(&event);
    }
    assert_eq!(got.contents["a"], numbered("a", 0..3));
    assert_eq!(got.contents["b"], numbered("b", 0..2));
    assert_eq!(got.contents["c"], [""], "toolcall data has no content");

    server
        .event("c", &session("c"), "toolcall", "grep: x")
        .await;
    let live = sse.next().await.expect("live event");
    assert_eq!(live.event, "toolcall");
    assert_eq!(
        live.json(),
        json!({"task": "c", "data": {"tool": "grep", "args": {"data": "x"}}})
    );
    server
        .event("a", &session("a"), "task_complete", "posing")
        .await;
    let posing = sse.next().await.expect("a stored task_complete");
    assert_eq!(
        posing.event, "agent_task_complete",
        "a stored row cannot pose as the end"
    );

    server.event("b", &session("b"), "assistant", "b 2").await;
    server.status("b", "Review").await;
    let b_end = sse.take(2).await;
    assert_eq!(
        task_and_content(&b_end[0]),
        ("b".to_owned(), "b 2".to_owned())
    );
    assert_eq!(b_end[1].event, "task_complete");
    assert_eq!(b_end[1].json(), json!({"task": "b", "status": "Review"}));

    server.status("a", "Done").await;
    let a_end = sse.next().await.expect("task_complete a");
    assert_eq!(a_end.json(), json!({"task": "a", "status": "Done"}));
    server
        .db
        .execute("DELETE FROM tasks WHERE id = 'c'", &[])
        .await
        .expect("delete c");
    let c_end = sse.next().await.expect("task_complete c");
    assert_eq!(c_end.json(), json!({"task": "c", "status": null}));
    let end = sse.next().await.expect("complete");
    assert_eq!((end.event.as_str(), end.json()), ("complete", json!({})));
    assert!(sse.ends().await, "the response ends after complete");

    // The final cursor says every task completed: 204 while nothing new exists (a deleted
    // task the cursor saw complete is not a 404).
    let again = open(server.addr(), &["a", "b", "c"], Some(&end.id)).await;
    assert_eq!(again.status, 204);
}

/// A cursor that saw a task complete does not follow it again while it has nothing new; a
/// task that came back in progress with new events is followed from where the cursor was.
#[tokio::test]
async fn a_completed_task_is_followed_again_only_with_new_events() {
    let server = TestServer::start(fast_config()).await;
    server.task("a", "Done").await;
    server.task("b", "Done").await;
    server.events("a", &session("a"), "a", 2).await;
    let mut sse = open(server.addr(), &["a", "b"], None).await;
    let events = sse.until_complete().await;
    let cursor = events.last().expect("complete").id.clone();
    assert_eq!(
        open(server.addr(), &["a", "b"], Some(&cursor)).await.status,
        204
    );

    server.status("a", "InProgress").await;
    assert_eq!(
        open(server.addr(), &["a", "b"], Some(&cursor)).await.status,
        204,
        "back in progress, but nothing new"
    );
    server.event("a", &session("a"), "assistant", "a 2").await;
    let mut back = open(server.addr(), &["a", "b"], Some(&cursor)).await;
    assert_eq!(back.status, 200);
    let next = back.next().await.expect("the new event");
    assert_eq!(task_and_content(&next), ("a".to_owned(), "a 2".to_owned()));
    // Without a cursor, both are followed (b, never started, completes at once).
    let mut fresh = open(server.addr(), &["a", "b"], None).await;
    let mut got = PerTask::default();
    for event in fresh.take(4).await {
        got.add(&event);
    }
    assert_eq!(got.contents["a"], numbered("a", 0..3));
    assert_eq!(got.completed["b"], json!("Done"));
}

/// Writers on every task throughout; the server restarts, and streams end every few hundred
/// milliseconds (maximum lifetime) and resume by the one cursor on the other instance. Every
/// task's events arrive exactly as committed: nothing lost, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_resumes_every_task_across_restarts_and_instances() {
    let config = || Config {
        max_stream_lifetime: Some(Duration::from_millis(400)),
        drain_deadline: Duration::from_secs(1),
        ..fast_config()
    };
    let first = TestServer::start(config()).await;
    let second = TestServer::start_on(config(), first.url.clone()).await;
    let tasks = ["t0", "t1", "t2", "t3", "t4"];
    for t in tasks {
        first.task(t, "InProgress").await;
    }
    let addrs = [first.addr(), second.addr()];
    let follower = tokio::spawn(async move { follow(&addrs, &tasks, None).await });
    let written = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = tasks
        .iter()
        .map(|task| {
            let url = first.url.clone();
            let task = task.to_string();
            let written = written.clone();
            tokio::spawn(async move {
                let db = connect(&url).await;
                for i in 0..60 {
                    let session = format!("{task}-{}", if i < 40 { "s1" } else { "s2" });
                    insert_event(&db, &task, &session, "assistant", &format!("{task} {i}")).await;
                    written.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // The restart comes while writes are under way: a quarter of them committed.
    eventually("a quarter of the writes", || {
        written.load(Ordering::Relaxed) >= tasks.len() * 15
    })
    .await;
    let first = first.restart(config()).await;
    for writer in writers {
        writer.await.expect("writer");
    }
    for t in tasks {
        first.status(t, "Done").await;
    }
    let received = follower.await.expect("follower");
    for t in tasks {
        let expected = committed(&first.db, t).await;
        assert_eq!(expected.len(), 20, "the latest session: s2");
        let got = received.contents.get(t).cloned().unwrap_or_default();
        // Events of s1 may or may not have been seen before s2 began; from s2 on, exactly.
        let from = got
            .iter()
            .position(|c| *c == format!("{t} 40"))
            .unwrap_or(got.len());
        assert_same(&got[from..], &expected, t);
        let s1: Vec<String> = got[..from].to_vec();
        let prefix: Vec<String> = (0..s1.len()).map(|i| format!("{t} {i}")).collect();
        assert_same(&s1, &prefix, &format!("{t} (s1)"));
        assert_eq!(received.completed[t], json!("Done"));
    }
    drop(second);
}

/// A cursor written for another task list: shared tasks resume where they were, new tasks
/// start at the beginning of their latest session, dropped tasks are ignored.
#[tokio::test]
async fn a_changed_task_list_resumes_the_tasks_it_shares() {
    let server = TestServer::start(fast_config()).await;
    for t in ["a", "b", "c"] {
        server.task(t, "InProgress").await;
        server.events(t, &session(t), t, 2).await;
    }
    let mut sse = open(server.addr(), &["a", "b"], None).await;
    let cursor = sse.take(4).await.last().expect("events").id.clone();
    drop(sse);
    server.events("a", &session("a"), "a+", 1).await;
    let mut changed = open(server.addr(), &["c", "a"], Some(&cursor)).await;
    assert_eq!(changed.status, 200);
    let mut got = PerTask::default();
    for event in changed.take(3).await {
        got.add(&event);
    }
    assert_eq!(got.contents["a"], ["a+ 0"], "a resumes after its cursor");
    assert_eq!(
        got.contents["c"],
        numbered("c", 0..2),
        "c starts at the beginning"
    );
    assert!(!got.contents.contains_key("b"));
}

/// With 100 tasks of 200-byte ids (and the URL and header limits raised for them), the cursor
/// is plain ASCII of at most 24 bytes a task plus a small fixed part, and it resumes them all.
#[tokio::test]
async fn the_cursor_stays_within_24_bytes_a_task() {
    let config = Config {
        max_url_bytes: 64 * 1024,
        max_header_bytes: 128 * 1024,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    let ids: Vec<String> = (0..100)
        .map(|i| format!("{i:03}-{}", "x".repeat(196)))
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    for id in &ids {
        server.task(id, "InProgress").await;
        server
            .event(id, &format!("{id}-session"), "assistant", "one")
            .await;
    }
    let mut sse = open(server.addr(), &ids, None).await;
    let events = sse.take(100).await;
    let cursor = &events.last().expect("events").id;
    assert!(cursor.is_ascii());
    assert!(cursor.len() <= 24 * 100 + 8, "{} bytes", cursor.len());
    drop(sse);
    server
        .event(ids[57], &format!("{}-session", ids[57]), "assistant", "two")
        .await;
    let mut resumed = open(server.addr(), &ids, Some(cursor)).await;
    let next = resumed.next().await.expect("the one new event");
    assert_eq!(
        task_and_content(&next),
        (ids[57].to_owned(), "two".to_owned())
    );
    server
        .event(ids[3], &format!("{}-session", ids[3]), "assistant", "three")
        .await;
    let after = resumed.next().await.expect("the next new event");
    assert_eq!(
        task_and_content(&after),
        (ids[3].to_owned(), "three".to_owned()),
        "nothing else between"
    );
}

/// Hostile task lists and cursors get a short `400`, never a stream, a hang or a 500.
#[tokio::test]
async fn hostile_task_lists_and_cursors_are_refused() {
    let server = TestServer::start(fast_config()).await;
    server.task("a", "InProgress").await;
    server.task("b", "InProgress").await;
    let addr = server.addr();
    let status = |path: String, cursor: Option<String>| async move {
        let headers: Vec<(&str, &str)> = cursor
            .iter()
            .map(|c| ("last-event-id", c.as_str()))
            .collect();
        let response = Response::get(addr, &path, &headers).await;
        let status = response.status;
        if status != 200 {
            let body = response.json().await;
            assert!(body["error"].is_string(), "{path}: {body}");
        }
        status
    };
    let many: Vec<String> = (0..101).map(|i| format!("t{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(status(path(&many), None).await, 400, "101 tasks");
    assert_eq!(status("/events/stream".into(), None).await, 400, "no task");
    assert_eq!(
        status("/events/stream?task".into(), None).await,
        400,
        "no value"
    );
    assert_eq!(
        status("/events/stream?task=a%0Ab".into(), None).await,
        400,
        "LF"
    );
    assert_eq!(
        status("/events/stream?task=a%00".into(), None).await,
        400,
        "NUL"
    );
    assert_eq!(
        status("/events/stream?task=%ff".into(), None).await,
        400,
        "not UTF-8"
    );
    for bad in [
        "nonsense",
        "czE:1",
        "m",
        "mzz",
        "m00AAAA",
        &format!("m00{}", "A".repeat(24 * 3)),
    ] {
        assert_eq!(
            status(path(&["a"]), Some(bad.to_owned())).await,
            400,
            "{bad}"
        );
    }
    // Duplicates count once: 150 copies of one task are one task, within the 100-task limit.
    let dup = vec!["a"; 150];
    let mut sse = open(addr, &dup, None).await;
    assert_eq!(sse.status, 200);
    server.event("a", &session("a"), "assistant", "once").await;
    let event = sse.next().await.expect("event");
    assert_eq!(
        task_and_content(&event),
        ("a".to_owned(), "once".to_owned())
    );
    server.event("a", &session("a"), "assistant", "twice").await;
    let next = sse.next().await.expect("event");
    assert_eq!(task_and_content(&next).1, "twice", "the first came once");
    // A cursor of another list (here a single-task stream's) is refused; one of another
    // multi-task list is matched by task.
    let single = format!("/events/stream?task=a&last_event_id={}", "czE%3A1");
    assert_eq!(status(single, None).await, 400);
    let other = event.id.clone();
    assert_eq!(
        status(path(&["b"]), Some(other)).await,
        200,
        "a's entry is ignored for b"
    );
}

/// A token that does not cover every task is `403` whether or not the tasks exist; only a
/// covered task that does not exist is `404`, naming it.
#[tokio::test]
async fn forbidden_before_missing() {
    let server = TestServer::start(with_auth(fast_config())).await;
    server.task("mine", "InProgress").await;
    let addr = server.addr();
    let get = |tasks: Vec<&'static str>, covers: Vec<&'static str>| async move {
        let bearer = format!("Bearer {}", token(&covers, 60));
        Response::get(addr, &path(&tasks), &[("authorization", &bearer)]).await
    };
    assert_eq!(get(vec!["mine", "ghost"], vec!["mine"]).await.status, 403);
    assert_eq!(get(vec!["mine", "theirs"], vec!["mine"]).await.status, 403);
    let missing = get(vec!["mine", "ghost"], vec!["mine", "ghost"]).await;
    assert_eq!(missing.status, 404);
    let body = missing.json().await;
    assert!(
        body["error"].as_str().expect("error").contains("ghost"),
        "{body}"
    );
    assert_eq!(get(vec!["mine"], vec!["*"]).await.status, 200);
    let anonymous = Response::get(addr, &path(&["mine"]), &[]).await;
    assert_eq!(anonymous.status, 401);
}

/// Counts the queries the server makes while 30 events of each of 5 tasks reach `clients`
/// multi-task clients and as many single-task clients of the first task: the tails are shared.
async fn queries_for(clients: usize) -> u64 {
    let server = TestServer::start(Config {
        poll_interval: Duration::from_secs(60),
        ..fast_config()
    })
    .await;
    let tasks = ["q0", "q1", "q2", "q3", "q4"];
    for t in tasks {
        server.task(t, "InProgress").await;
        server.event(t, &session(t), "assistant", "stored").await;
    }
    let mut multi = join_all((0..clients).map(|_| open(server.addr(), &tasks, None))).await;
    let mut single = join_all((0..clients).map(|_| server.stream("q0"))).await;
    for sse in &mut multi {
        sse.take(5).await;
    }
    for sse in &mut single {
        sse.take(1).await;
    }
    let metrics = server.handle.metrics();
    let before = metrics.total_queries();
    for i in 0..30 {
        for t in tasks {
            server
                .event(t, &session(t), "assistant", &format!("{t} {i}"))
                .await;
        }
    }
    for sse in &mut multi {
        let mut got = PerTask::default();
        for event in sse.take(150).await {
            got.add(&event);
        }
        for t in tasks {
            assert_eq!(got.contents[t], numbered(t, 0..30));
        }
    }
    for sse in &mut single {
        assert_eq!(sse.take(30).await.len(), 30);
    }
    metrics.total_queries() - before
}

/// The queries made while events are written do not grow with the number of clients.
#[tokio::test]
async fn database_queries_do_not_grow_with_clients() {
    let one = queries_for(1).await;
    let fifty = queries_for(50).await;
    assert!(one <= 10, "1 client: {one} queries for 150 events");
    assert!(
        fifty <= one + 5,
        "50 clients: {fifty} queries, 1 client: {one}"
    );
}
