//! Push delivery through the hub: notifications deliver without polling, clients of a task
//! share one tail, database load does not grow with clients, gaps and lost notifications are
//! repaired from the table, and slow clients neither hold a backlog nor slow the others.

use std::time::Duration;

use futures_util::future::join_all;
use support::cluster::connect;
use support::http::Response;
use support::ledger::{assert_ledger, contents, numbered};
use support::raw_client::RawClient;
use support::server::{TestServer, fast_config};
use support::wait::eventually;
use support::writer::insert_event;
use taskstream::Config;
use taskstream::metrics::{EndReason, QueryKind};

/// A configuration whose poll is too slow to deliver anything within a test.
fn push_only() -> Config {
    Config {
        poll_interval: Duration::from_secs(60),
        ..fast_config()
    }
}

/// With a 60 s poll, an event still arrives within seconds: only its notification can have
/// delivered it.
#[tokio::test]
async fn a_notification_delivers_without_polling() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    sse.read_more().await;
    for i in 0..3 {
        server
            .event("t", "s1", "assistant", &format!("pushed {i}"))
            .await;
        assert_eq!(contents(&sse.take(1).await), [format!("pushed {i}")]);
    }
    assert!(server.handle.metrics().notifications.get() >= 3);
}

/// 200 clients on one task share one tail and each receives the same events, in the same
/// order, exactly once.
#[tokio::test]
async fn two_hundred_clients_receive_every_event_once() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    let mut clients = join_all((0..200).map(|_| server.stream("t"))).await;
    assert!(clients.iter().all(|c| c.status == 200));
    assert_eq!(
        server.handle.tail_count(),
        1,
        "one tail for every client of the task"
    );

    server.events("t", "s1", "e", 50).await;
    let expected = numbered("e", 0..50);
    let received = join_all(clients.iter_mut().map(|c| c.take(50))).await;
    for (i, events) in received.iter().enumerate() {
        assert_ledger(events, &expected, &format!("client {i}"));
    }
}

/// Counts the queries the server makes while 40 small events and one oversized event reach
/// `clients` clients of one task.
async fn queries_for(clients: usize) -> u64 {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "stored").await;
    let mut streams = join_all((0..clients).map(|_| server.stream("t"))).await;
    // Every client has replayed (one page of events each); the tail knows nothing yet.
    let metrics = server.handle.metrics();
    eventually("every replay", || {
        metrics.query_count(QueryKind::Events) == clients as u64
    })
    .await;

    let before = server.handle.metrics().total_queries();
    server.events("t", "s1", "e", 40).await;
    let big = "x".repeat(9000);
    server.event("t", "s1", "assistant", &big).await;
    for events in join_all(streams.iter_mut().map(|s| s.take(42))).await {
        let mut expected = vec!["stored".to_owned()];
        expected.extend(numbered("e", 0..40));
        expected.push(big.clone());
        assert_ledger(&events, &expected, "client");
    }
    server.handle.metrics().total_queries() - before
}

/// The queries made while events are written do not grow with the number of clients, and are
/// far below one per event: the tail's first event costs one position query, an oversized event
/// one read of the table, whatever the number of clients.
#[tokio::test]
async fn database_queries_do_not_grow_with_clients() {
    let one = queries_for(1).await;
    let hundred = queries_for(100).await;
    assert!(one <= 4, "1 client: {one} queries for 41 events");
    assert!(
        hundred <= one + 2,
        "100 clients: {hundred} queries, 1 client: {one}"
    );
}

/// A notification whose seq skips ahead (the one before it was never notified) makes the
/// tail read the missing event from the table.
#[tokio::test]
async fn a_gap_is_filled_from_the_table() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "one").await;
    let mut sse = server.stream("t").await;
    assert_eq!(contents(&sse.take(1).await), ["one"]);
    server.event("t", "s1", "assistant", "two").await;
    assert_eq!(contents(&sse.take(1).await), ["two"]);

    server
        .db
        .batch_execute("ALTER TABLE agent_events DISABLE TRIGGER agent_events_notify")
        .await
        .expect("disable");
    server.event("t", "s1", "assistant", "silent").await;
    server
        .db
        .batch_execute("ALTER TABLE agent_events ENABLE TRIGGER agent_events_notify")
        .await
        .expect("enable");
    let events_read = server.handle.metrics().query_count(QueryKind::Events);
    server.event("t", "s1", "assistant", "four").await;

    assert_eq!(contents(&sse.take(2).await), ["silent", "four"]);
    assert!(server.handle.metrics().query_count(QueryKind::Events) > events_read);
}

/// Terminating the LISTEN backend while events are written: the hub reconnects, re-reads, and
/// every client still gets every event once.
#[tokio::test]
async fn terminating_the_listen_backend_loses_nothing() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    let mut clients = join_all((0..20).map(|_| server.stream("t"))).await;

    let (written_tx, mut written) = tokio::sync::watch::channel(0);
    let writer = {
        let db = connect(&server.url).await;
        tokio::spawn(async move {
            for i in 0..300 {
                insert_event(&db, "t", "s1", "assistant", &format!("e {i}")).await;
                written_tx.send_replace(i + 1);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    let admin = connect(&server.url).await;
    // Kill it twice while the writer is mid-way.
    for committed in [80, 180] {
        written
            .wait_for(|n| *n >= committed)
            .await
            .expect("the writer is running");
        let killed = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = $1 AND datname = current_database()",
                &[&taskstream::live::pg_listener::APPLICATION_NAME],
            )
            .await
            .expect("terminate");
        assert_eq!(killed.get::<_, i64>(0), 1, "one LISTEN connection");
        let reconnects = server.handle.metrics().listen_reconnects.get();
        eventually("the LISTEN connection to come back", || {
            server.handle.metrics().listen_reconnects.get() > reconnects
        })
        .await;
    }
    writer.await.expect("writer");

    let expected = numbered("e", 0..300);
    for (i, events) in join_all(clients.iter_mut().map(|c| c.take(300)))
        .await
        .iter()
        .enumerate()
    {
        assert_ledger(events, &expected, &format!("client {i}"));
    }
}

/// With notifications off (a pooler in transaction mode), polling alone delivers everything.
#[tokio::test]
async fn polling_alone_delivers_with_notifications_off() {
    let config = Config {
        notify: false,
        poll_interval: Duration::from_millis(100),
        ..fast_config()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    server.events("t", "s1", "e", 25).await;
    assert_ledger(&sse.take(25).await, &numbered("e", 0..25), "client");
    server.status("t", "Done").await;
    assert_eq!(sse.until_complete().await.len(), 1);
    assert_eq!(server.handle.metrics().notifications.get(), 0);
}

/// An event of 3,000 `✓` (9,000 bytes, over the notification limit) is stored and delivered.
#[tokio::test]
async fn an_event_over_the_notification_limit_is_delivered() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    let checks = "✓".repeat(3000);
    server.event("t", "s1", "assistant", &checks).await;
    assert_eq!(contents(&sse.take(1).await), [checks]);
}

/// A client that stops reading does not delay the others and holds no backlog: it falls off
/// the live tail and, when it reads again, catches up from the table, in order. One that
/// stalls past the write timeout is disconnected, and its resume by cursor delivers the rest.
#[tokio::test]
async fn slow_clients_catch_up_or_are_disconnected() {
    let config = Config {
        client_buffer: 4,
        write_timeout: Duration::from_secs(8),
        ..push_only()
    };
    let server = TestServer::start(config).await;
    server.task("t", "InProgress").await;
    let path = "/tasks/t/events/stream";
    let mut fast = server.stream("t").await;
    let mut paused = RawClient::get(server.addr(), path, 4096).await;
    let mut stalled = RawClient::get(server.addr(), path, 4096).await;
    eventually("three streams", || {
        server.handle.metrics().open_streams.get() == 3
    })
    .await;

    // 2000 events of 5 KB (10 MB) in one transaction: more than the kernel's socket buffers hold
    // (Linux grows a send buffer up to 4 MB by default).
    let catch_ups = server.handle.metrics().catch_ups.get();
    let filler = "y".repeat(5000);
    server
        .db
        .execute(
            "INSERT INTO agent_events (task_id, session_id, event_type, content)
             SELECT 't', 's1', 'assistant', 'e ' || (i - 1) || ' ' || $1 FROM generate_series(1, 2000) i",
            &[&filler],
        )
        .await
        .expect("insert 2000 events");
    let expected: Vec<String> = (0..2000).map(|i| format!("e {i} {filler}")).collect();

    // The fast client gets its events while the other two read nothing: more of them than the
    // tail's ring and the paused client's buffers hold, so the paused client has fallen off.
    let mut fast_events = fast.take(600).await;

    // The paused client reads again, within the write timeout however slow this machine is (it
    // waited for 600 events only), and has everything in order: having fallen off the live
    // tail, it was fed from the table at its own pace.
    paused.read_events(2000).await;
    fast_events.extend(fast.take(1400).await);
    assert_ledger(&fast_events, &expected, "fast client");
    assert_ledger(&paused.events, &expected, "paused client");
    assert!(
        server.handle.metrics().catch_ups.get() > catch_ups,
        "clients that fell behind caught up from the table"
    );

    // The stalled client never reads: it is disconnected after the write timeout ...
    eventually("a slow-client disconnect", || {
        server.handle.metrics().stream_end_count(EndReason::Slow) == 1
    })
    .await;
    stalled.read_to_end().await;
    let received = stalled.events.len();
    assert!(received < 2000, "the stalled client was cut off");
    // ... and its resume from the last event it got delivers exactly the rest.
    let cursor = stalled
        .events
        .last()
        .map(|e| e.id.clone())
        .unwrap_or_default();
    let mut resumed = Response::get(server.addr(), path, &[("last-event-id", &cursor)]).await;
    let mut all = stalled.events.clone();
    all.extend(resumed.take(2000 - received).await);
    assert_ledger(&all, &expected, "stalled client after resuming");
}

/// Clients that connect while events are being written switch from replay to live without a
/// gap or a duplicate, whatever the moment they arrive.
#[tokio::test]
async fn replay_hands_over_to_live_without_gap_or_duplicate() {
    let server = TestServer::start(push_only()).await;
    server.task("t", "InProgress").await;
    let writer = {
        let db = connect(&server.url).await;
        tokio::spawn(async move {
            for i in 0..400 {
                insert_event(&db, "t", "s1", "assistant", &format!("e {i}")).await;
            }
        })
    };
    let mut clients = Vec::new();
    while !writer.is_finished() {
        clients.push(server.stream("t").await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    writer.await.expect("writer");
    assert!(clients.len() >= 10, "clients joined throughout the writes");
    let expected = numbered("e", 0..400);
    for (i, events) in join_all(clients.iter_mut().map(|c| c.take(400)))
        .await
        .iter()
        .enumerate()
    {
        assert_ledger(events, &expected, &format!("client {i}"));
    }
}
