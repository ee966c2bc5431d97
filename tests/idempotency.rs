//! Idempotent writes (`Idempotency-Key`) and the bound on concurrent writes, over real sockets
//! against real PostgreSQL, across instances.

use std::net::SocketAddr;

use serde_json::{Value, json};
use support::cluster::connect;
use support::http::Response;
use support::ledger::committed;
use support::server::{TestServer, fast_config};
use support::wait::WAIT;
use taskstream::Config;
use tokio_postgres::Client;

fn event(content: &str) -> Value {
    json!({ "session": "s1", "type": "assistant", "content": content })
}

async fn post_keyed(addr: SocketAddr, key: &str, body: &Value) -> Response {
    Response::json_request(
        "POST",
        addr,
        "/tasks/t/events",
        &[("idempotency-key", key)],
        body,
    )
    .await
}

/// Backends of `db`'s database waiting for a lock.
async fn waiting_for_locks(db: &Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        &[],
    )
    .await
    .expect("pg_stat_activity")
    .get(0)
}

/// A connection in a transaction that holds session `s1`'s row lock until it commits: every
/// write of that session waits for it.
async fn lock_session(url: &str) -> Client {
    let holder = connect(url).await;
    holder
        .batch_execute("BEGIN; UPDATE agent_sessions SET last_seq = last_seq WHERE id = 's1'")
        .await
        .expect("lock the session");
    holder
}

/// Waits until `n` backends wait for a lock.
async fn until_waiting(db: &Client, n: i64) {
    let deadline = std::time::Instant::now() + WAIT;
    while waiting_for_locks(db).await < n {
        assert!(std::time::Instant::now() < deadline, "{n} lock waits");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A retry with the same key and body gets the first answer and writes nothing; the same key
/// with another body gets `422`; a key is per task; without a key every POST writes.
#[tokio::test]
async fn a_retry_gets_the_first_answer_and_writes_nothing() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.task("u", "InProgress").await;
    let body = json!([event("a"), event("b")]);
    let first = post_keyed(server.addr(), "k-1", &body).await;
    assert_eq!(first.status, 201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let first = first.json().await;
    let retry = post_keyed(server.addr(), "k-1", &body).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.json().await, first);
    assert_eq!(committed(&server.db, "t").await.len(), 2);

    let other = post_keyed(server.addr(), "k-1", &json!([event("c")])).await;
    assert_eq!(other.status, 422);
    assert!(other.json().await["error"].is_string());
    assert_eq!(committed(&server.db, "t").await.len(), 2);

    let elsewhere = Response::json_request(
        "POST",
        server.addr(),
        "/tasks/u/events",
        &[("idempotency-key", "k-1")],
        &json!({ "session": "s2", "type": "assistant", "content": "a" }),
    )
    .await;
    assert_eq!(elsewhere.status, 201, "keys are per task");

    // A failed write stores no key: the retry writes.
    let missing = Response::json_request(
        "POST",
        server.addr(),
        "/tasks/nope/events",
        &[("idempotency-key", "k-2")],
        &json!({ "session": "fresh", "type": "assistant" }),
    )
    .await;
    assert_eq!(missing.status, 404);
    for bad in ["", "has space", &"k".repeat(256)] {
        let refused = post_keyed(server.addr(), bad, &event("x")).await;
        assert_eq!(refused.status, 400, "{bad:?}");
    }
    assert_eq!(committed(&server.db, "t").await.len(), 2);
}

/// A key older than `--idempotency-window` is free again, and servers prune expired keys.
#[tokio::test]
async fn expired_keys_are_free_and_pruned() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    assert_eq!(
        post_keyed(server.addr(), "old", &event("a")).await.status,
        201
    );
    server
        .db
        .batch_execute("UPDATE taskstream_idempotency SET created_at = now() - interval '25 hours'")
        .await
        .expect("age the key");
    let again = post_keyed(server.addr(), "old", &event("a")).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_eq!(committed(&server.db, "t").await.len(), 2);

    server
        .db
        .batch_execute("UPDATE taskstream_idempotency SET created_at = now() - interval '25 hours'")
        .await
        .expect("age the key");
    // Pruning runs when a server starts, then now and then.
    let server = server.restart(fast_config()).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: i64 = server
            .db
            .query_one("SELECT count(*) FROM taskstream_idempotency", &[])
            .await
            .expect("count")
            .get(0);
        if left == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "keys pruned");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Two requests with one key race on two instances: the second waits for the first and
/// answers what it answered; the batch is written once.
#[tokio::test]
async fn racing_requests_with_one_key_on_two_instances_write_once() {
    let a = TestServer::start(fast_config()).await;
    let b = TestServer::start_on(fast_config(), a.url.clone()).await;
    a.task("t", "InProgress").await;
    a.event("t", "s1", "assistant", "before").await;
    // Hold the session's row lock, so the first request takes the key and then waits.
    let holder = lock_session(&a.url).await;
    let observer = connect(&a.url).await;
    let body = json!([event("x"), event("y")]);
    let first = tokio::spawn({
        let body = body.clone();
        let addr = a.addr();
        async move { post_keyed(addr, "race", &body).await }
    });
    until_waiting(&observer, 1).await;
    let second = tokio::spawn({
        let body = body.clone();
        let addr = b.handle.local_addr();
        async move { post_keyed(addr, "race", &body).await }
    });
    until_waiting(&observer, 2).await;
    holder.batch_execute("COMMIT").await.expect("release");
    let first = first.await.expect("first");
    let second = second.await.expect("second");
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (201, 201));
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(first.json().await, second.json().await);
    assert_eq!(committed(&a.db, "t").await.len(), 3, "written once");
}

/// Beyond `--max-writes`, a write waits briefly and then gets `503` with `retry-after`, while
/// streams still start.
#[tokio::test]
async fn writes_beyond_max_writes_get_503_and_streams_still_start() {
    let config = Config {
        max_writes: 1,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "before").await;
    let holder = lock_session(&server.url).await;
    let observer = connect(&server.url).await;
    let stuck = tokio::spawn({
        let addr = server.addr();
        async move { Response::json_request("POST", addr, "/tasks/t/events", &[], &event("x")).await }
    });
    until_waiting(&observer, 1).await;
    let refused =
        Response::json_request("POST", server.addr(), "/tasks/t/events", &[], &event("y")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());
    let mut stream = server.stream("t").await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.take(1).await[0].data, r#"{"content":"before"}"#);
    holder.batch_execute("COMMIT").await.expect("release");
    assert_eq!(stuck.await.expect("stuck").status, 201);
}

/// A keyed write that waits longer than the key's wait for its session's lock gets `409` with
/// `retry-after` and writes nothing; the same request once the lock is free writes.
#[tokio::test]
async fn a_keyed_write_behind_a_busy_session_gets_409_with_retry_after() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "before").await;
    let holder = lock_session(&server.url).await;
    let busy = post_keyed(server.addr(), "busy", &event("x")).await;
    assert_eq!(busy.status, 409);
    assert!(busy.header("retry-after").is_some());
    assert!(busy.json().await["error"].is_string());
    holder.batch_execute("COMMIT").await.expect("release");
    assert_eq!(committed(&server.db, "t").await.len(), 1, "nothing written");
    let retry = post_keyed(server.addr(), "busy", &event("x")).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.header("idempotent-replayed"), None);
    assert_eq!(committed(&server.db, "t").await.len(), 2);
}
