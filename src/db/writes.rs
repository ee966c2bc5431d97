//! What an agent writes, exactly as the README tells agents to write it: the demo agent uses
//! these on its own connection. The schema's triggers do the rest (sessions, `seq`,
//! notifications).

use tokio_postgres::{Client, Error};

/// Creates the task as `InProgress`, or puts an existing one back in progress.
pub(crate) async fn start_task(client: &Client, id: &str, title: &str) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO tasks (id, title, status) VALUES ($1, $2, 'InProgress')
             ON CONFLICT (id) DO UPDATE SET status = 'InProgress'",
            &[&id, &title],
        )
        .await
        .map(drop)
}

/// Appends an event to `session` of `task`.
pub(crate) async fn insert_event(
    client: &Client,
    task: &str,
    session: &str,
    event_type: &str,
    content: &str,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO agent_events (task_id, session_id, event_type, content)
             VALUES ($1, $2, $3, $4)",
            &[&task, &session, &event_type, &content],
        )
        .await
        .map(drop)
}

/// Sets the task's status (which ends its streams when it is no longer `InProgress`).
pub(crate) async fn set_status(client: &Client, id: &str, status: &str) -> Result<(), Error> {
    client
        .execute(
            "UPDATE tasks SET status = $2 WHERE id = $1",
            &[&id, &status],
        )
        .await
        .map(drop)
}
