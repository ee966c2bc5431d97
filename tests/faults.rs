//! Faults short of a PostgreSQL restart (that one has its own binary, `restart.rs`): the LISTEN
//! backend killed, PostgreSQL unreachable at start, rolled-back and long-open writer
//! transactions. Every client ends with exactly the committed rows.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::cluster::connect;
use support::ledger::{assert_exact, assert_ledger, committed, contents, follow, numbered};
use support::server::{TestServer, fast_config};
use support::wait::{WAIT, eventually};
use support::writer::insert_event;

/// The LISTEN backend is terminated while events are written: the reconnect is counted and
/// every client still ends with exactly the committed rows.
#[tokio::test]
async fn a_killed_listen_backend_loses_nothing() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let addr = server.addr();
    let followers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { follow(&[addr], "t", None).await }))
        .collect();
    let db = connect(&server.url).await;
    for i in 0..200 {
        insert_event(&db, "t", "s1", "assistant", &format!("e {i}")).await;
        if i == 100 {
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1 AND datname = current_database()",
                &[&taskstream::live::pg_listener::APPLICATION_NAME],
            )
            .await
            .expect("terminate the LISTEN backend");
        }
    }
    eventually("the LISTEN reconnect", || {
        server.handle.metrics().listen_reconnects.get() == 1
    })
    .await;
    server.status("t", "Done").await;
    let committed = committed(&db, "t").await;
    for (i, received) in join_all(followers).await.into_iter().enumerate() {
        assert_exact(
            &received.expect("follower"),
            &committed,
            &format!("client {i}"),
        );
    }
}

/// With PostgreSQL unreachable, starting fails fast with a clear error instead of hanging —
/// through the library and through the binary.
#[tokio::test]
async fn unreachable_postgres_fails_fast_and_clearly() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");

    let started = Instant::now();
    let error = taskstream::start(fast_config(), &url, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect_err("no database, no server");
    assert!(started.elapsed() < Duration::from_secs(5), "failed fast");
    let message = error.to_string();
    assert!(message.starts_with("cannot use PostgreSQL"), "{message}");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_taskstream"))
        .args(["--listen", "127.0.0.1:0", "--database-url", &url])
        .output();
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("the binary exits")
        .expect("run taskstream");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot use PostgreSQL"), "{stderr}");

    let bad_url = taskstream::start(
        fast_config(),
        "not a url",
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await;
    assert!(
        bad_url
            .expect_err("refused")
            .to_string()
            .starts_with("invalid database URL")
    );
}

/// A writer transaction left open on one session neither stalls other sessions nor leaves a
/// gap in its own: other tasks stream on, and its event arrives in order once it commits.
#[tokio::test]
async fn a_long_open_transaction_stalls_nothing_else() {
    let server = TestServer::start(fast_config()).await;
    server.task("slow", "InProgress").await;
    server.task("busy", "InProgress").await;
    server.event("slow", "a", "assistant", "a 0").await;
    let mut slow = server.stream("slow").await;
    let mut busy = server.stream("busy").await;
    assert_eq!(contents(&slow.take(1).await), ["a 0"]);

    let mut holder = connect(&server.url).await;
    let open = holder.transaction().await.expect("begin");
    insert_event(&open, "slow", "a", "assistant", "a 1").await;
    // Other sessions, of this task's neighbours, flow while it stays open.
    for i in 0..20 {
        server
            .event("busy", "b", "assistant", &format!("b {i}"))
            .await;
    }
    assert_ledger(&busy.take(20).await, &numbered("b", 0..20), "busy task");
    // A rolled-back insert in the busy session leaves no hole either.
    let mut other = connect(&server.url).await;
    let rolled = other.transaction().await.expect("begin");
    insert_event(&rolled, "busy", "b", "assistant", "never").await;
    rolled.rollback().await.expect("rollback");
    server.event("busy", "b", "assistant", "b 20").await;
    assert_eq!(contents(&busy.take(1).await), ["b 20"]);

    open.commit().await.expect("commit");
    server.event("slow", "a", "assistant", "a 2").await;
    assert_ledger(&slow.take(2).await, &numbered("a", 1..3), "slow task");
    server.status("slow", "Done").await;
    server.status("busy", "Done").await;
    let events = slow.until_complete().await;
    assert_eq!(events.last().map(|e| e.id.as_str()), Some("YQ:3:c"));
    let busy_rest = busy.until_complete().await;
    assert_eq!(busy_rest.last().map(|e| e.id.as_str()), Some("Yg:21:c"));
}
