//! Graceful shutdown: new streams are refused, open streams end cleanly (spread over a
//! window), the server returns before its drain deadline, and clients resume elsewhere by
//! cursor. And the optional maximum stream lifetime.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::http::Response;
use support::ledger::{assert_ledger, contents, numbered};
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use support::writer::insert_event;
use taskstream::Config;
use taskstream::metrics::EndReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// With open streams, a shutdown ends every one of them (spread over the first half of the
/// drain deadline, not all at once) and the server stops before the deadline; each client then
/// resumes on another instance from its cursor and gets exactly the rest.
#[tokio::test]
async fn shutdown_ends_streams_and_clients_resume_elsewhere() {
    let config = Config {
        drain_deadline: Duration::from_secs(3),
        ..fast_config()
    };
    let server = TestServer::start(config.clone()).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 5).await;
    let mut clients = join_all((0..20).map(|_| server.stream("t"))).await;
    for events in join_all(clients.iter_mut().map(|c| c.take(5))).await {
        assert_ledger(&events, &numbered("e", 0..5), "before shutdown");
    }

    let started = Instant::now();
    server.handle.shutdown();
    let ended_at = join_all(clients.iter_mut().map(|c| async {
        assert!(c.ends().await, "the stream ends without another event");
        started.elapsed()
    }))
    .await;
    let TestServer { handle, url, db } = server;
    handle.stopped().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped within the drain deadline"
    );
    let first = ended_at.iter().min().expect("ends");
    let last = ended_at.iter().max().expect("ends");
    assert!(
        *last - *first > Duration::from_millis(100),
        "closes are spread: {first:?} .. {last:?}"
    );

    // Another instance on the same database: every client resumes from its cursor.
    let other = TestServer::start_on(fast_config(), url).await;
    for i in 5..8 {
        insert_event(&db, "t", "s1", "assistant", &format!("e {i}")).await;
    }
    for client in &clients {
        let cursor = client.last_id().expect("a cursor");
        let mut resumed = Response::get(
            other.addr(),
            "/tasks/t/events/stream",
            &[("last-event-id", &cursor)],
        )
        .await;
        assert_ledger(
            &resumed.take(3).await,
            &numbered("e", 5..8),
            "after resuming",
        );
    }
}

/// From the moment draining starts, `/readyz` answers 503 (to a request already on its way)
/// and no new stream is accepted.
#[tokio::test]
async fn readyz_fails_as_soon_as_draining_starts() {
    let config = Config {
        drain_deadline: Duration::from_secs(2),
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    let mut open = server.stream("t").await; // keeps the drain going for a moment
    open.read_more().await;

    let mut pending = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    pending
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("half a request");
    eventually("the connection to be served", || {
        server.handle.metrics().connections.get() == 2
    })
    .await;
    server.handle.shutdown();
    pending.write_all(b"\r\n").await.expect("the rest of it");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, pending.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        tokio::net::TcpStream::connect(server.addr()).await.is_err(),
        "no longer accepting"
    );
}

/// With a maximum stream lifetime, a stream ends by itself (no `complete`) after about that
/// long, and its client resumes by cursor.
#[tokio::test]
async fn streams_end_after_their_maximum_lifetime() {
    let config = Config {
        max_stream_lifetime: Some(Duration::from_millis(500)),
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "e", 2).await;
    let mut sse = server.stream("t").await;
    let events = sse.take(2).await;
    assert!(sse.ends().await, "ended without complete");
    eventually("a lifetime end", || {
        server
            .handle
            .metrics()
            .stream_end_count(EndReason::Lifetime)
            == 1
    })
    .await;
    server.event("t", "s1", "assistant", "e 2").await;
    let mut resumed = Response::get(
        server.addr(),
        "/tasks/t/events/stream",
        &[("last-event-id", &events[1].id)],
    )
    .await;
    assert_eq!(contents(&resumed.take(1).await), ["e 2"]);
}
