//! The server's reads: where a task stands, a session's events, the task list.

use std::sync::Arc;

use tokio_postgres::Row;

use super::{Db, DbError, IN_PROGRESS};
use crate::metrics::QueryKind;
use crate::wire::{cursor, multi_cursor};

/// A task row's version for the live task list: the later of `tasks.updated_at` (set by the
/// schema on every update) and its latest session's start, in microseconds. Derived from what
/// is stored already: nothing is written per event. (A macro, so that the queries using it stay
/// constants.)
macro_rules! version {
    () => {
        "(extract(epoch FROM greatest(t.updated_at, (
            SELECT max(started_at) FROM agent_sessions WHERE task_id = t.id))) * 1000000)::int8"
    };
}
pub(crate) use version;

/// The columns of a task row as [`task_from`] reads them, from `tasks t` and the
/// [`latest_session!`] `s`: times as RFC 3339 text in UTC (microseconds), so that no date crate
/// is needed to show them.
macro_rules! task_columns {
    () => {
        concat!(
            "t.id, t.title, t.status, \
             to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             to_char(t.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             s.id, s.last_seq, ",
            $crate::db::reads::version!()
        )
    };
}
pub(crate) use task_columns;

/// The join that gives task `t` its latest session `s` (or nulls).
macro_rules! latest_session {
    () => {
        " LEFT JOIN LATERAL (SELECT id, last_seq FROM agent_sessions WHERE task_id = t.id \
           ORDER BY started_at DESC, id DESC LIMIT 1) s ON true "
    };
}
pub(crate) use latest_session;

/// The latest session of a task, `started_at` in microseconds for ordering.
const POSITION_SQL: &str = "
    SELECT t.status, s.id, (extract(epoch FROM s.started_at) * 1000000)::int8, s.last_seq
    FROM tasks t
    LEFT JOIN LATERAL (
        SELECT id, started_at, last_seq FROM agent_sessions
        WHERE task_id = t.id ORDER BY started_at DESC, id DESC LIMIT 1
    ) s ON true
    WHERE t.id = $1";

/// The same for many tasks in one round trip (the poll tick). Tasks that no longer exist are
/// absent from the result.
const POSITIONS_SQL: &str = "
    SELECT t.id, t.status, s.id, (extract(epoch FROM s.started_at) * 1000000)::int8, s.last_seq
    FROM unnest($1::text[]) AS w (id)
    JOIN tasks t ON t.id = w.id
    LEFT JOIN LATERAL (
        SELECT id, started_at, last_seq FROM agent_sessions
        WHERE task_id = t.id ORDER BY started_at DESC, id DESC LIMIT 1
    ) s ON true";

/// A page of a session's events after a seq: at most `$3` rows, and no more than `$4` bytes of
/// type and content together, except that the first row always comes whole (PostgreSQL returns
/// whole rows). `octet_length` reads a stored value's size without decompressing it, and rows
/// past the budget are never sent. `more` says whether a row follows within the `$3` read.
/// `seq > $2` is an exact tail because seq is gapless in commit order (see `schema.sql`).
const EVENTS_SQL: &str = "
    SELECT seq, event_type, content, more FROM (
        SELECT seq, event_type, content,
               row_number() OVER w AS n,
               sum(octet_length(event_type) + octet_length(content)) OVER w AS upto,
               lead(seq) OVER w IS NOT NULL AS more
        FROM (
            SELECT seq, event_type, content FROM agent_events
            WHERE session_id = $1 AND seq > $2
            ORDER BY seq LIMIT $3
        ) page
        WINDOW w AS (ORDER BY seq)
    ) sized
    WHERE n = 1 OR upto <= $4
    ORDER BY seq";

/// A page of the task list, newest first: `$2` is the task the previous page ended with (only
/// older ones follow; an unknown one gives an empty page), `$3` the ids the reader may see
/// (`NULL`: all). Ties on `created_at` are broken by id, so every task is on exactly one page.
/// A `$2` the reader may not see is treated as unknown: where the page would start tells when
/// that task was created, and whether it exists at all.
const TASKS_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks t ",
    latest_session!(),
    "
    LEFT JOIN tasks b ON b.id = $2 AND ($3::text[] IS NULL OR b.id = ANY ($3))
    WHERE ($2::text IS NULL
           OR t.created_at < b.created_at
           OR (t.created_at = b.created_at AND t.id > b.id))
      AND ($3::text[] IS NULL OR t.id = ANY ($3))
    ORDER BY t.created_at DESC, t.id
    LIMIT $1"
);

/// One task (the viewer's task page, `GET /tasks/{id}` as JSON).
const TASK_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks t ",
    latest_session!(),
    " WHERE t.id = $1"
);

/// The rows of some tasks, by id (the live task list re-reading what notifications named).
/// Tasks that no longer exist are absent.
const TASK_ROWS_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM unnest($1::text[]) AS w (id) JOIN tasks t ON t.id = w.id ",
    latest_session!()
);

/// A session, as far as ordering and cursors need it. Shared (`Arc`) by every frame and stream
/// that refers to it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// The session id as stored.
    pub(crate) id: String,
    /// `started_at` in microseconds since the epoch.
    pub(crate) started_at: i64,
    /// `<base64url(id)>:`, the start of every cursor in this session.
    pub(crate) cursor_prefix: String,
    /// How a multi-task cursor names this session.
    pub(crate) hash: u64,
}

impl Session {
    /// A session with its cursor prefix computed.
    pub(crate) fn new(id: String, started_at: i64) -> Session {
        let cursor_prefix = cursor::session_prefix(&id);
        let hash = multi_cursor::session_hash(&id);
        Session {
            id,
            started_at,
            cursor_prefix,
            hash,
        }
    }

    /// Whether `self` started after `other` (the latest session is the one started last, ties
    /// broken by id).
    pub(crate) fn is_newer_than(&self, other: &Session) -> bool {
        (self.started_at, &self.id) > (other.started_at, &other.id)
    }

    /// The cursor of event `seq` of this session.
    pub(crate) fn cursor(&self, seq: i64) -> String {
        format!("{}{seq}", self.cursor_prefix)
    }
}

/// Where a task stands: its status and how far its latest session goes.
#[derive(Debug, Clone)]
pub(crate) struct TaskPosition {
    /// The status as stored (what `task_complete` reports).
    pub(crate) status: String,
    /// The latest session and its last seq, `None` before the first event.
    pub(crate) head: Option<(Arc<Session>, i64)>,
}

impl TaskPosition {
    /// Whether the task is `InProgress`: its stream follows it live.
    pub(crate) fn in_progress(&self) -> bool {
        self.status == IN_PROGRESS
    }
}

/// One stored event of a session.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    /// Position in its session, from 1, gapless.
    pub(crate) seq: i64,
    /// The `event_type` as stored.
    pub(crate) event_type: String,
    /// The `content` as stored.
    pub(crate) content: String,
}

/// How much one read of a session's events may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageLimit {
    /// Most rows.
    pub(crate) rows: i64,
    /// Most bytes of type and content together (the first row comes whole, however large).
    pub(crate) bytes: usize,
}

/// One read of a session's events.
#[derive(Debug)]
pub(crate) struct EventPage {
    /// The events, in seq order.
    pub(crate) rows: Vec<StoredEvent>,
    /// Whether more events may follow the last one (the page was cut by its rows or bytes).
    pub(crate) more: bool,
}

/// Which part of the task list to read.
#[derive(Debug, Clone, Copy)]
pub struct TaskListing<'a> {
    /// At most this many tasks.
    pub limit: i64,
    /// Only tasks older than this one (the next page); `None`: from the newest.
    pub before: Option<&'a str>,
    /// Only these task ids (the ones a reader's token covers); `None`: every task.
    pub only: Option<&'a [String]>,
}

/// A task as the viewer, the JSON API and the live task list show it.
#[derive(Debug)]
pub struct TaskSummary {
    /// Task id.
    pub id: String,
    /// Task title.
    pub title: String,
    /// Task status.
    pub status: String,
    /// When it was created, RFC 3339 in UTC.
    pub created_at: String,
    /// When its title or status last changed, RFC 3339 in UTC.
    pub updated_at: String,
    /// Its latest session's id and last seq, `None` before its first event.
    pub session: Option<(String, i64)>,
    /// Grows with every change the live task list reports (see `version!` in this file), so a
    /// client drops a delta older than what it has.
    pub version: i64,
}

impl TaskSummary {
    /// The task as JSON: the one shape of every answer and frame that carries a task (the JSON
    /// API's `GET /tasks/{id}`, `GET /tasks`, `PUT /tasks/{id}`, and the live task list).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "session": self.session.as_ref().map(|(id, last_seq)| serde_json::json!({
                "id": id,
                "last_seq": last_seq,
            })),
            "version": self.version,
        })
    }
}

impl Db {
    /// The position of one task, `None` if it does not exist.
    pub(crate) async fn position(&self, task_id: &str) -> Result<Option<TaskPosition>, DbError> {
        let rows = self
            .query(QueryKind::Position, POSITION_SQL, &[&task_id])
            .await?;
        Ok(rows.first().map(|row| position_from(row, 0)))
    }

    /// The positions of many tasks at once; tasks that no longer exist are absent.
    pub(crate) async fn positions(
        &self,
        task_ids: &[&str],
    ) -> Result<Vec<(String, TaskPosition)>, DbError> {
        let rows = self
            .query(QueryKind::Positions, POSITIONS_SQL, &[&task_ids])
            .await?;
        Ok(rows
            .iter()
            .map(|row| (row.get(0), position_from(row, 1)))
            .collect())
    }

    /// Events of `session` after `after`, in seq order, within `limit` (or the one next row
    /// when it alone is larger).
    pub(crate) async fn events(
        &self,
        session: &str,
        after: i64,
        limit: PageLimit,
    ) -> Result<EventPage, DbError> {
        let bytes = i64::try_from(limit.bytes).unwrap_or(i64::MAX);
        let rows = self
            .query(
                QueryKind::Events,
                EVENTS_SQL,
                &[&session, &after, &limit.rows, &bytes],
            )
            .await?;
        let more = rows.len() as i64 == limit.rows || rows.last().is_some_and(|row| row.get(3));
        // Each row's raw bytes are freed as it is read: a page is held once, not twice.
        Ok(EventPage {
            rows: rows
                .into_iter()
                .map(|row| StoredEvent {
                    seq: row.get(0),
                    event_type: row.get(1),
                    content: row.get(2),
                })
                .collect(),
            more,
        })
    }

    /// A page of the task list, newest first.
    pub async fn tasks(&self, listing: TaskListing<'_>) -> Result<Vec<TaskSummary>, DbError> {
        let rows = self
            .query(
                QueryKind::Tasks,
                TASKS_SQL,
                &[&listing.limit, &listing.before, &listing.only],
            )
            .await?;
        Ok(rows.iter().map(|row| task_from(row, 0)).collect())
    }

    /// The rows of `task_ids` that exist, in no particular order.
    pub(crate) async fn task_rows(&self, task_ids: &[&str]) -> Result<Vec<TaskSummary>, DbError> {
        let rows = self
            .query(QueryKind::Task, TASK_ROWS_SQL, &[&task_ids])
            .await?;
        Ok(rows.iter().map(|row| task_from(row, 0)).collect())
    }

    /// One task, `None` if it does not exist.
    pub(crate) async fn task(&self, task_id: &str) -> Result<Option<TaskSummary>, DbError> {
        let rows = self.query(QueryKind::Task, TASK_SQL, &[&task_id]).await?;
        Ok(rows.first().map(|row| task_from(row, 0)))
    }

    /// Whether PostgreSQL answers.
    pub(crate) async fn ping(&self) -> Result<(), DbError> {
        self.query(QueryKind::Ping, "SELECT 1", &[]).await.map(drop)
    }

    /// The share of PostgreSQL's notification queue in use (0 to 1). A LISTENer that holds a
    /// transaction open keeps the queue from being cleaned up, until writers' commits fail.
    pub(crate) async fn notification_queue_usage(&self) -> Result<f64, DbError> {
        let rows = self
            .query(
                QueryKind::QueueUsage,
                "SELECT pg_notification_queue_usage()",
                &[],
            )
            .await?;
        Ok(rows.first().map_or(0.0, |row| row.get(0)))
    }
}

/// Reads the [`task_columns!`] of `row`, starting at column `first`.
pub(crate) fn task_from(row: &Row, first: usize) -> TaskSummary {
    let session: Option<String> = row.get(first + 5);
    TaskSummary {
        id: row.get(first),
        title: row.get(first + 1),
        status: row.get(first + 2),
        created_at: row.get(first + 3),
        updated_at: row.get(first + 4),
        session: session.map(|id| (id, row.get(first + 6))),
        version: row.get(first + 7),
    }
}

/// Reads status, session id, started_at and last_seq from `row`, starting at column `first`.
fn position_from(row: &Row, first: usize) -> TaskPosition {
    let status: &str = row.get(first);
    let session: Option<String> = row.get(first + 1);
    TaskPosition {
        status: status.to_owned(),
        head: session.map(|id| {
            let started_at: i64 = row.get(first + 2);
            let last_seq: i64 = row.get(first + 3);
            (Arc::new(Session::new(id, started_at)), last_seq)
        }),
    }
}

/// Sessions and positions for the unit tests of the decisions that read them.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::sync::Arc;

    use super::{Session, TaskPosition};

    /// A session started at `started_at` (microseconds).
    pub(crate) fn session(id: &str, started_at: i64) -> Arc<Session> {
        Arc::new(Session::new(id.to_owned(), started_at))
    }

    /// A task's position: its status and its latest session's last seq.
    pub(crate) fn position(in_progress: bool, head: Option<(&Arc<Session>, i64)>) -> TaskPosition {
        TaskPosition {
            status: if in_progress { "InProgress" } else { "Done" }.to_owned(),
            head: head.map(|(session, seq)| (session.clone(), seq)),
        }
    }
}
