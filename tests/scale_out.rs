//! Several instances on one PostgreSQL: they start together (each applying the schema at the
//! same time), and a client cut off from one resumes on another with exactly what it missed.

use std::time::Duration;

use futures_util::future::join_all;
use support::cluster::empty_database;
use support::ledger::{assert_exact, assert_ledger, committed, follow, numbered};
use support::server::{TestServer, fast_config, resume_elsewhere};
use taskstream::Config;

/// Three instances start at once on a fresh database; a client streams from A, is cut off,
/// resumes on B with its cursor and gets exactly what it missed; C serves the same stream.
#[tokio::test]
async fn instances_share_one_database_and_cursors_work_on_each() {
    let url = empty_database().await;
    let instances =
        join_all((0..3).map(|_| TestServer::start_on(fast_config(), url.clone()))).await;
    let (a, b, c) = (&instances[0], &instances[1], &instances[2]);
    resume_elsewhere(a, b.addr()).await;
    let mut on_c = c.stream("t").await;
    assert_ledger(&on_c.take(10).await, &numbered("e", 0..10), "on C");
}

/// Instances whose streams end every 300 ms or so (`max_stream_lifetime`): a client that
/// resumes on the next instance each time ends with exactly the committed rows.
#[tokio::test]
async fn a_client_hopping_between_instances_misses_nothing() {
    let url = empty_database().await;
    let config = Config {
        max_stream_lifetime: Some(Duration::from_millis(300)),
        ..fast_config()
    };
    let instances =
        join_all((0..3).map(|_| TestServer::start_on(config.clone(), url.clone()))).await;
    let writer = &instances[0];
    writer.task("t", "InProgress").await;
    let addrs: Vec<_> = instances.iter().map(|i| i.addr()).collect();
    let hopper = tokio::spawn(async move { follow(&addrs, "t", None).await });
    for i in 0..60 {
        writer
            .event("t", "s1", "assistant", &format!("e {i}"))
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await; // spread the writes over several lifetimes
    }
    writer.status("t", "Done").await;
    let committed = committed(&writer.db, "t").await;
    assert_exact(&hopper.await.expect("hopper"), &committed, "hopping client");
    let ended_by_lifetime: u64 = instances
        .iter()
        .map(|i| {
            i.handle
                .metrics()
                .stream_end_count(taskstream::metrics::EndReason::Lifetime)
        })
        .sum();
    assert!(
        ended_by_lifetime >= 2,
        "the client really hopped ({ended_by_lifetime} hops)"
    );
}
