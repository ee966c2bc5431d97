//! The live task list's source: which tasks changed, each re-read once for every client.
//!
//! A task notification (created, retitled, new session, status change, deletion) only names a
//! task; the feed re-reads that task's row and broadcasts its frame (or its deletion's), encoded
//! once, to every task-list client, which sends those its token covers. The payload is never trusted for content,
//! and PostgreSQL folds identical payloads within one transaction, so a re-read is also what
//! makes two changes in one transaction one current row. Ids that arrive together are read in
//! one query, and nothing is read while no client listens: database load follows the changes,
//! not the clients.
//!
//! There is no change log to replay: a client that lags (or a LISTEN connection that
//! reconnected, losing notifications) is told to resync, and takes a fresh snapshot.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::db::{Db, TaskSummary};
use crate::wire::sse;

/// Changes a slow task-list client may fall behind by before it resyncs from a snapshot.
const LIST_CAPACITY: usize = 256;

/// Task ids queued for re-reading before the feed gives up on them and tells clients to resync.
const INBOX_CAPACITY: usize = 1024;

/// Most ids re-read in one query.
const MAX_READ: usize = 500;

/// What a task-list client receives.
#[derive(Debug, Clone)]
pub(crate) enum ListChange {
    /// A `task` frame (the task's current row: created, or changed) or a `task_deleted` frame,
    /// encoded once for every client whose token covers `task`.
    Frame { task: Arc<str>, frame: Bytes },
    /// Changes may have been missed: take a new snapshot.
    Resync,
}

/// What the hub tells the feed.
#[derive(Debug)]
enum FeedMsg {
    Changed(String),
    Resync,
}

/// The feed's handle (the hub holds it). Dropping it ends the reading task.
#[derive(Debug)]
pub(crate) struct TaskFeed {
    inbox: mpsc::Sender<FeedMsg>,
    out: broadcast::Sender<ListChange>,
}

impl TaskFeed {
    /// Starts the feed's reading task, which reads rows from `db`.
    pub(crate) fn spawn(db: Db) -> TaskFeed {
        let (inbox, queue) = mpsc::channel(INBOX_CAPACITY);
        let (out, _) = broadcast::channel(LIST_CAPACITY);
        tokio::spawn(read_changes(db, queue, out.clone()));
        TaskFeed { inbox, out }
    }

    /// Every change from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ListChange> {
        self.out.subscribe()
    }

    /// `task` changed. Ignored while no client listens; never waits (the hub calls it for
    /// every notification): a full queue becomes a resync.
    pub(crate) fn changed(&self, task: &str) {
        if self.out.receiver_count() == 0 {
            return;
        }
        if self
            .inbox
            .try_send(FeedMsg::Changed(task.to_owned()))
            .is_err()
        {
            let _ = self.out.send(ListChange::Resync);
        }
    }

    /// Changes may have been lost (the LISTEN connection reconnected, or a notification named
    /// nothing precise): every client takes a new snapshot, after whatever is queued.
    pub(crate) fn resync(&self) {
        if self.out.receiver_count() > 0 && self.inbox.try_send(FeedMsg::Resync).is_err() {
            let _ = self.out.send(ListChange::Resync);
        }
    }
}

/// The reading task: takes every id waiting (up to [`MAX_READ`]), reads their rows in one
/// query, and broadcasts each row or deletion in the order the ids first arrived.
async fn read_changes(
    db: Db,
    mut queue: mpsc::Receiver<FeedMsg>,
    out: broadcast::Sender<ListChange>,
) {
    while let Some(first) = queue.recv().await {
        let mut ids: Vec<String> = Vec::new();
        let mut resync = false;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                FeedMsg::Changed(id) if !ids.contains(&id) => ids.push(id),
                FeedMsg::Changed(_) => {}
                FeedMsg::Resync => resync = true,
            }
            if ids.len() < MAX_READ {
                next = queue.try_recv().ok();
            }
        }
        if !ids.is_empty() {
            let wanted: Vec<&str> = ids.iter().map(String::as_str).collect();
            match db.task_rows(&wanted).await {
                Ok(rows) => publish(&out, &ids, rows),
                Err(error) => {
                    tracing::warn!(%error, "task list re-read failed; clients resync");
                    resync = true;
                }
            }
        }
        if resync {
            let _ = out.send(ListChange::Resync);
        }
    }
}

/// Broadcasts, in the order of `ids`, the row of each found in `rows` and the deletion of the
/// others.
fn publish(out: &broadcast::Sender<ListChange>, ids: &[String], rows: Vec<TaskSummary>) {
    let mut rows: HashMap<String, TaskSummary> =
        rows.into_iter().map(|row| (row.id.clone(), row)).collect();
    for id in ids {
        let frame = match rows.remove(id) {
            Some(row) => sse::event_without_id("task", &row.to_json().to_string()),
            None => sse::event_without_id("task_deleted", &json!({ "id": id }).to_string()),
        };
        let task = Arc::from(id.as_str());
        let _ = out.send(ListChange::Frame { task, frame });
    }
}
