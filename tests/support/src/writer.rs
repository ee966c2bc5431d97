//! What an agent writes into the tables (tasks, events, statuses), and a writer whose open
//! transaction holds the events table.

use tokio_postgres::{Client, GenericClient};

use crate::cluster::connect;

/// Creates task `id` with `status` on `db`.
pub async fn insert_task(db: &impl GenericClient, id: &str, status: &str) {
    db.execute(
        "INSERT INTO tasks (id, title, status) VALUES ($1, $2, $3)",
        &[&id, &format!("task {id}"), &status],
    )
    .await
    .expect("insert task");
}

/// Inserts an event on `db`; returns its seq.
pub async fn insert_event(
    db: &impl GenericClient,
    task: &str,
    session: &str,
    event_type: &str,
    content: &str,
) -> i64 {
    db.query_one(
        "INSERT INTO agent_events (task_id, session_id, event_type, content)
         VALUES ($1, $2, $3, $4) RETURNING seq",
        &[&task, &session, &event_type, &content],
    )
    .await
    .expect("insert event")
    .get(0)
}

/// Sets `task`'s status on `db`.
pub async fn set_status(db: &impl GenericClient, task: &str, status: &str) {
    db.execute(
        "UPDATE tasks SET status = $2 WHERE id = $1",
        &[&task, &status],
    )
    .await
    .expect("update status");
}

/// A connection holding an exclusive lock on `agent_events` in an open transaction: every read
/// of events blocks until `ROLLBACK` is sent on it.
pub async fn lock_events_table(url: &str) -> Client {
    let locker = connect(url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE agent_events IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock agent_events");
    locker
}
