//! Concurrent writers of one session: `seq` is assigned in commit order with no holes, so a
//! tail that reads `seq > cursor` never skips a row that commits late.

use support::cluster::connect;
use support::ledger::contents;
use support::server::{TestServer, fast_config};
use support::wait::WAIT;
use support::writer::insert_event;

/// T1 inserts and stays open; T2 inserts into the same session and must wait on T1's session
/// lock; T1 commits, then T2. Both are delivered in commit order with consecutive seqs.
#[tokio::test]
async fn two_writers_of_one_session_are_delivered_in_commit_order() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    server.event("t", "s1", "assistant", "first").await;
    let mut sse = server.stream("t").await;
    assert_eq!(contents(&sse.take(1).await), ["first"]);

    let mut t1 = connect(&server.url).await;
    let t2 = connect(&server.url).await;
    let t2_pid: i32 = t2
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);

    let tx1 = t1.transaction().await.expect("begin T1");
    let seq1 = insert_event(&tx1, "t", "s1", "assistant", "from T1").await;
    let writer2 =
        tokio::spawn(async move { insert_event(&t2, "t", "s1", "assistant", "from T2").await });

    // T2 really waits on T1's lock (without the session row lock this never happens).
    let observer = connect(&server.url).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let row = observer
            .query_one(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
                &[&t2_pid],
            )
            .await
            .expect("pg_stat_activity");
        if row.get::<_, Option<String>>(0).as_deref() == Some("Lock") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "T2 never waited on T1's lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!writer2.is_finished());

    tx1.commit().await.expect("commit T1");
    let seq2 = writer2.await.expect("T2 task");
    assert_eq!((seq1, seq2), (2, 3), "consecutive seqs in commit order");

    let events = sse.take(2).await;
    assert_eq!(contents(&events), ["from T1", "from T2"]);
    assert_eq!(events[0].id, "czE:2");
    assert_eq!(events[1].id, "czE:3");
}

/// A rolled-back insert takes its seq with it: the next committed event fills the position and
/// nothing is skipped or stalled.
#[tokio::test]
async fn a_rolled_back_insert_leaves_no_gap() {
    let server = TestServer::start(fast_config()).await;
    server.task("t", "InProgress").await;
    let mut sse = server.stream("t").await;
    server.event("t", "s1", "assistant", "a").await;

    let mut writer = connect(&server.url).await;
    let tx = writer.transaction().await.expect("begin");
    insert_event(&tx, "t", "s1", "assistant", "rolled back").await;
    tx.rollback().await.expect("rollback");
    server.event("t", "s1", "assistant", "b").await;

    let events = sse.take(2).await;
    assert_eq!(contents(&events), ["a", "b"]);
    assert_eq!(events[1].id, "czE:2");
}

/// An event for a session that belongs to another task is refused, so a session's events
/// always belong to one task.
#[tokio::test]
async fn a_session_belongs_to_one_task() {
    let server = TestServer::start(fast_config()).await;
    server.task("a", "InProgress").await;
    server.task("b", "InProgress").await;
    server.event("a", "s1", "assistant", "mine").await;
    let refused = server
        .db
        .execute(
            "INSERT INTO agent_events (task_id, session_id, event_type, content) VALUES ('b', 's1', 'x', 'y')",
            &[],
        )
        .await;
    assert!(refused.is_err());
}
