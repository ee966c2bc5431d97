//! A live task list (`GET /tasks` with `Accept: text/event-stream`): a snapshot, then deltas.
//!
//! On every (re)connect the stream sends `event: snapshot` with the newest tasks the reader's
//! token covers (`{"tasks": [{"id", "title", "status", "version"}, …]}`), then `event: task`
//! with a task's current row whenever it is created or changes (status, title, a new session),
//! and `event: task_deleted` with `{"id"}` when it is deleted. Rows come from the hub's
//! [`crate::live::task_feed`], re-read once for all clients. `version` grows with each change,
//! so a client keeps the newest row it has seen and drops older ones. There is no cursor: a
//! reconnect (or a client that fell behind) takes a new snapshot, which is the recovery.

use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;

use super::{EventBody, open_outlet, stream_ended};
use crate::app::App;
use crate::db::{TaskListing, TaskSummary};
use crate::live::task_feed::ListChange;
use crate::metrics::EndReason;
use crate::wire::sse;

/// What the router hands over for a task-list stream.
#[derive(Debug)]
pub(crate) struct ListStart {
    /// Tasks in the snapshot.
    pub(crate) limit: i64,
    /// The task ids the token covers (`None`: all, or authentication is off).
    pub(crate) only: Option<Vec<String>>,
    pub(crate) token_expires: Option<SystemTime>,
    pub(crate) slot: OwnedSemaphorePermit,
}

/// Starts the stream task of a live task list and returns the response body.
pub(crate) fn spawn_list(app: Arc<App>, start: ListStart) -> EventBody {
    let (mut out, body) = open_outlet(&app, start.token_expires);
    // Subscribed before the snapshot is read: a change after the read arrives as a delta.
    let mut changes = app.hub.task_list();
    tokio::spawn(async move {
        let watcher = out.watcher();
        let mut gone = pin!(watcher.closed());
        let covers = |id: &str| {
            start
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|o| o == id))
        };
        let result: Result<(), EndReason> = async {
            out.send(sse::retry(app.config.retry.as_millis() as u64))
                .await?;
            out.send(Box::pin(snapshot(&app, &start)).await?).await?;
            loop {
                let frame = match out.next(changes.recv(), gone.as_mut()).await? {
                    Ok(ListChange::Frame { task, frame }) if covers(&task) => frame,
                    Ok(ListChange::Frame { .. }) => continue,
                    Ok(ListChange::Resync) | Err(RecvError::Lagged(_)) => {
                        changes = changes.resubscribe();
                        Box::pin(snapshot(&app, &start)).await?
                    }
                    Err(RecvError::Closed) => return Err(EndReason::Shutdown),
                };
                out.send(frame).await?;
            }
        }
        .await;
        stream_ended(&app, result, None);
        drop(start.slot);
    });
    body
}

/// The `snapshot` frame: the newest `limit` tasks the token covers. Callers box it, like every
/// query of a stream, so that an idle list's future does not keep the query's state.
async fn snapshot(app: &App, start: &ListStart) -> Result<bytes::Bytes, EndReason> {
    let listing = TaskListing {
        limit: start.limit,
        before: None,
        only: start.only.as_deref(),
    };
    let tasks = {
        let _turn = app.read_slot().await;
        app.db.tasks(listing).await
    };
    match tasks {
        Ok(tasks) => Ok(sse::event_without_id(
            "snapshot",
            &json!({ "tasks": tasks.iter().map(TaskSummary::to_json).collect::<Vec<_>>() })
                .to_string(),
        )),
        Err(error) => {
            tracing::warn!(%error, "task list snapshot failed");
            Err(EndReason::Error)
        }
    }
}
