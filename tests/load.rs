//! Load, bounded and on loopback: thousands of streams on one session, and a reconnect storm
//! with a fixed number of database connections. (Connect/disconnect churn has its own binary,
//! `churn.rs`, because it measures the process's memory.)
//!
//! Counts are the full counts unless `TASKSTREAM_LOAD_DIVISOR` divides them (e.g. `4`
//! on a slow machine); even divided they stay in the hundreds, enough to exercise the mechanism.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use support::cluster::connect;
use support::http::Response;
use support::ledger::{assert_ledger, numbered};
use support::load::load_count;
use support::server::{TestServer, fast_config};
use support::wait::eventually;
use taskstream::Config;

/// Opens `n` streams of `task`, at most `parallel` connection attempts at a time (so the listen
/// backlog never overflows into SYN retries).
async fn open_streams(
    server: &TestServer,
    task: &str,
    n: usize,
    headers: &[(String, String)],
) -> Vec<Response> {
    let addr = server.addr();
    let path = format!("/tasks/{task}/events/stream");
    futures_util::stream::iter(0..n)
        .map(|_| {
            let path = path.clone();
            async move {
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let sse = Response::get(addr, &path, &headers).await;
                assert_eq!(sse.status, 200);
                sse
            }
        })
        .buffered(200)
        .collect()
        .await
}

/// 5,000 streams on one session: each receives every event, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_streams_on_one_session_get_every_event_once() {
    taskstream::raise_open_files_limit().expect("raise the open files limit");
    let server = TestServer::start(Config {
        max_streams: 20_000,
        ..fast_config()
    })
    .await;
    server.task("t", "InProgress").await;
    let count = load_count(5000);
    let mut clients = open_streams(&server, "t", count, &[]).await;
    eventually("every stream open", || {
        server.handle.metrics().open_streams.get() == count as i64
    })
    .await;

    server.events("t", "s1", "e", 20).await;
    let expected = numbered("e", 0..20);
    for (i, events) in join_all(clients.iter_mut().map(|c| c.take(20)))
        .await
        .iter()
        .enumerate()
    {
        assert_ledger(events, &expected, &format!("client {i}"));
    }
    assert_eq!(server.handle.tail_count(), 1);
}

/// 2,000 clients drop and resume at once with `Last-Event-ID`: all catch up with exactly what
/// they missed, and the server's database connections never exceed its pool plus the LISTEN
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_catches_up_on_a_fixed_number_of_connections() {
    taskstream::raise_open_files_limit().expect("raise the open files limit");
    let pool_size = 8;
    let config = Config {
        pool_size,
        max_replays: 6,
        max_streams: 20_000,
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    server.events("t", "s1", "before", 50).await;
    let count = load_count(2000);
    let mut clients = open_streams(&server, "t", count, &[]).await;
    for events in join_all(clients.iter_mut().map(|c| c.take(50))).await {
        assert_ledger(&events, &numbered("before", 0..50), "first connection");
    }
    let cursors: Vec<String> = clients
        .iter()
        .map(|c| c.last_id().expect("cursor"))
        .collect();
    drop(clients);
    eventually("every stream to end", || {
        server.handle.metrics().open_streams.get() == 0
    })
    .await;
    server.events("t", "s1", "missed", 50).await;

    // Watch the server's connections to the database through the storm.
    let most = Arc::new(AtomicI64::new(0));
    let storming = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (db, most, storming) = (connect(&server.url).await, most.clone(), storming.clone());
        tokio::spawn(async move {
            while storming.load(Ordering::Acquire) {
                let row = db
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE datname = current_database() AND application_name LIKE 'taskstream%'",
                        &[],
                    )
                    .await
                    .expect("count connections");
                most.fetch_max(row.get::<_, i64>(0), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let addr = server.addr();
    let resumed = join_all(cursors.iter().map(|cursor| async move {
        let mut sse =
            Response::get(addr, "/tasks/t/events/stream", &[("last-event-id", cursor)]).await;
        assert_eq!(sse.status, 200);
        sse.take(50).await
    }))
    .await;
    storming.store(false, Ordering::Release);
    watcher.await.expect("watcher");
    for (i, events) in resumed.iter().enumerate() {
        assert_ledger(events, &numbered("missed", 0..50), &format!("client {i}"));
    }
    let most = most.load(Ordering::Acquire);
    assert!(
        most <= pool_size as i64 + 1,
        "{most} connections for a pool of {pool_size} + LISTEN"
    );
}
