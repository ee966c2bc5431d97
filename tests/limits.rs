//! Limits: open streams, slow or silent clients, oversized requests, stuck queries, and a queue
//! for client reads so that a reconnect storm cannot take the whole pool.

use std::time::Duration;

use support::http::Response;
use support::ledger::{assert_ledger, numbered};
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use support::writer::lock_events_table;
use taskstream::Config;
use taskstream::metrics::EndReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Beyond `max_streams`, a new stream gets `503` with `retry-after`; a closed stream frees its
/// place.
#[tokio::test]
async fn streams_beyond_the_maximum_get_503() {
    let server = TestServer::start(Config {
        max_streams: 2,
        ..fast_config()
    })
    .await;
    server.task("t", "InProgress").await;
    let mut first = server.stream("t").await;
    let _second = server.stream("t").await;
    first.read_more().await;

    let refused = server.stream("t").await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("2"));
    assert!(refused.json().await["error"].is_string());

    drop(first);
    eventually("the first stream to end", || {
        server.handle.metrics().open_streams.get() == 1
    })
    .await;
    assert_eq!(server.stream("t").await.status, 200);
}

/// Sends `bytes` on a new connection and returns everything the server answers until it closes
/// the connection (failing if it stays open).
async fn answer_to(server: &TestServer, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr()).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Slowloris: a client that sends half a request line and stalls, one that connects and sends
/// nothing, and one that stalls inside the HTTP/2 preface are all closed after the header
/// timeout.
#[tokio::test]
async fn stalled_requests_are_closed_after_the_header_timeout() {
    let server = TestServer::start(Config {
        header_timeout: Duration::from_millis(300),
        ..fast_config()
    })
    .await;
    for partial in [&b"GET /healthz HTT"[..], b"", b"PRI * HTTP/2.0\r\n"] {
        let answer = answer_to(&server, partial).await;
        assert!(!answer.contains("200 OK"), "{partial:?} got {answer}");
    }
    eventually("every stalled connection to be gone", || {
        server.handle.metrics().connections.get() == 0
    })
    .await;
}

/// A request head larger than the limit gets `431`; a request target longer than the limit
/// gets `414`.
#[tokio::test]
async fn oversized_requests_are_refused() {
    let server = TestServer::start(fast_config()).await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = answer_to(&server, huge_header.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let long_path = format!(
        "/tasks/{}/events/stream",
        "x".repeat(taskstream::config::DEFAULT_MAX_URL_BYTES)
    );
    let response = Response::get(server.addr(), &long_path, &[]).await;
    assert_eq!(response.status, 414);
}

/// A query stuck behind a lock is cancelled by the statement timeout: the stream ends cleanly
/// (no partial frame, no `complete`) and the client resumes once the database is free.
#[tokio::test]
async fn a_stuck_replay_ends_the_stream_cleanly() {
    let config = Config {
        statement_timeout: Duration::from_millis(300),
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 3).await;

    let lock = lock_events_table(&server.url).await;
    let mut sse = server.stream("t").await;
    assert_eq!(sse.status, 200);
    assert!(sse.ends().await, "the stream ends without an event");
    assert!(
        sse.raw.ends_with(b"\n\n"),
        "no partial frame: {:?}",
        String::from_utf8_lossy(&sse.raw)
    );
    assert_eq!(
        server.handle.metrics().stream_end_count(EndReason::Error),
        1
    );
    lock.batch_execute("ROLLBACK").await.expect("unlock");

    let mut again = server.stream("t").await;
    assert_ledger(&again.take(3).await, &numbered("e", 0..3), "after the lock");
}

/// Client reads queue for a turn (`max_replays`) instead of taking every pooled connection:
/// while one replay is stuck, a second stream start waits, and `/readyz` still gets a
/// connection.
#[tokio::test]
async fn client_reads_queue_instead_of_exhausting_the_pool() {
    let config = Config {
        max_replays: 1,
        max_writes: 1,
        pool_size: 3,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 3).await;

    let lock = lock_events_table(&server.url).await;
    let mut first = server.stream("t").await; // its replay holds the only turn, stuck on the lock
    let second = tokio::spawn({
        let addr = server.addr();
        async move { Response::get(addr, "/tasks/t/events/stream", &[]).await }
    });
    let metrics = server.handle.metrics();
    eventually("the second stream start to queue for a turn", || {
        metrics.reads_waiting.get() == 1
    })
    .await;
    assert!(
        !second.is_finished(),
        "the second stream start waits for a turn"
    );
    assert_eq!(
        Response::get(server.addr(), "/readyz", &[]).await.status,
        200,
        "the pool is not exhausted"
    );

    lock.batch_execute("ROLLBACK").await.expect("unlock");
    let mut second = second.await.expect("second client");
    assert_ledger(&first.take(3).await, &numbered("e", 0..3), "first");
    assert_ledger(&second.take(3).await, &numbered("e", 0..3), "second");
}
