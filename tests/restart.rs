//! PostgreSQL restarted under load. Its own test binary, so its own cluster: a restart here
//! cannot break any other test.

use std::time::Duration;

use futures_util::future::join_all;
use support::cluster::{cluster, connect};
use support::http::Response;
use support::ledger::{assert_exact, committed, follow};
use support::server::{TestServer, fast_config};
use support::wait::WAIT;
use tokio::sync::oneshot;

/// Inserts `n` events, reconnecting and retrying through outages; reports after `signal_at`.
async fn write_through_outages(
    url: String,
    n: usize,
    signal_at: usize,
    halfway: oneshot::Sender<()>,
) {
    let mut halfway = Some(halfway);
    let mut db: Option<tokio_postgres::Client> = None;
    for i in 0..n {
        loop {
            if db.as_ref().is_none_or(|c| c.is_closed()) {
                db = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        Some(client)
                    }
                    Err(_) => None,
                };
            }
            if let Some(client) = &db {
                let inserted = client
                    .execute(
                        "INSERT INTO agent_events (task_id, session_id, event_type, content)
                         VALUES ('t', 's1', 'assistant', $1)",
                        &[&format!("e {i}")],
                    )
                    .await;
                if inserted.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if i + 1 == signal_at
            && let Some(halfway) = halfway.take()
        {
            let _ = halfway.send(());
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// While events are written and 50 clients stream, PostgreSQL stops and starts again (under
/// the harness's own supervision): `/readyz` is 503 while it is down and 200 after, streams
/// continue or end and resume by cursor, and every client ends with exactly the committed rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_loses_nothing() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let addr = server.addr();
    let followers: Vec<_> = (0..50)
        .map(|_| tokio::spawn(async move { follow(&[addr], "t", None).await }))
        .collect();

    let (halfway_tx, halfway) = oneshot::channel();
    let writer = tokio::spawn(write_through_outages(
        server.url.clone(),
        300,
        100,
        halfway_tx,
    ));
    halfway.await.expect("the writer got halfway");

    tokio::task::spawn_blocking(|| cluster().stop_server())
        .await
        .expect("thread")
        .expect("stop postgres");
    let ready = Response::get(addr, "/readyz", &[]).await;
    assert_eq!(ready.status, 503, "not ready while PostgreSQL is down");
    tokio::time::sleep(Duration::from_millis(300)).await; // an outage long enough to matter
    tokio::task::spawn_blocking(|| cluster().start_server())
        .await
        .expect("thread")
        .expect("start postgres");
    let deadline = std::time::Instant::now() + WAIT;
    while Response::get(addr, "/readyz", &[]).await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    writer.await.expect("writer");
    let db = connect(&server.url).await;
    db.execute("UPDATE tasks SET status = 'Done' WHERE id = 't'", &[])
        .await
        .expect("finish the task");
    let committed = committed(&db, "t").await;
    assert!(committed.len() >= 300);
    for (i, received) in join_all(followers).await.into_iter().enumerate() {
        assert_exact(
            &received.expect("follower"),
            &committed,
            &format!("client {i}"),
        );
    }
}
