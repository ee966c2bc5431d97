//! Every query the server makes, and the pool they run on. The only file with SQL in it (the
//! schema itself is `schema.sql`).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use crate::wire::cursor;
use crate::metrics::{Metrics, QueryKind};

/// The schema, applied at startup by the server, the tests and the benchmark alike.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// The status in which a task's stream stays open.
pub const IN_PROGRESS: &str = "InProgress";

/// Notification channel of event inserts (see `schema.sql`).
pub const EVENTS_CHANNEL: &str = "taskstream_events";

/// Notification channel of task status changes and deletions.
pub const TASKS_CHANNEL: &str = "taskstream_tasks";

/// Longest wait for a pooled connection before a request gives up with `503`.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for a new database connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A page of a session's events after a seq. `seq > $2` is an exact tail because seq is
/// gapless in commit order (see `schema.sql`).
const EVENTS_SQL: &str = "
    SELECT seq, event_type, content FROM agent_events
    WHERE session_id = $1 AND seq > $2
    ORDER BY seq LIMIT $3";

/// A page of the task list, newest first: `$2` is the task the previous page ended with (only
/// older ones follow; an unknown one gives an empty page), `$3` the ids the reader may see
/// (`NULL`: all). Ties on `created_at` are broken by id, so every task is on exactly one page.
const TASKS_SQL: &str = "
    SELECT t.id, t.title, t.status
    FROM tasks t
    LEFT JOIN tasks b ON b.id = $2
    WHERE ($2::text IS NULL
           OR t.created_at < b.created_at
           OR (t.created_at = b.created_at AND t.id > b.id))
      AND ($3::text[] IS NULL OR t.id = ANY ($3))
    ORDER BY t.created_at DESC, t.id
    LIMIT $1";

/// One task's title and status (the viewer's task page).
const TASK_SQL: &str = "SELECT id, title, status FROM tasks WHERE id = $1";

/// A session, as far as ordering and cursors need it. Shared (`Arc`) by every frame and stream
/// that refers to it.
#[derive(Debug, PartialEq, Eq)]
pub struct Session {
    /// The session id as stored.
    pub id: String,
    /// `started_at` in microseconds since the epoch.
    pub started_at: i64,
    /// `<base64url(id)>:`, the start of every cursor in this session.
    pub cursor_prefix: String,
}

impl Session {
    /// A session with its cursor prefix computed.
    pub fn new(id: String, started_at: i64) -> Session {
        let cursor_prefix = cursor::session_prefix(&id);
        Session {
            id,
            started_at,
            cursor_prefix,
        }
    }

    /// Whether `self` started after `other` (the latest session is the one started last, ties
    /// broken by id).
    pub fn is_newer_than(&self, other: &Session) -> bool {
        (self.started_at, &self.id) > (other.started_at, &other.id)
    }

    /// The cursor of event `seq` of this session.
    pub fn cursor(&self, seq: i64) -> String {
        format!("{}{seq}", self.cursor_prefix)
    }
}

/// Where a task stands: its status and how far its latest session goes.
#[derive(Debug, Clone)]
pub struct TaskPosition {
    /// Whether the status is `InProgress`.
    pub in_progress: bool,
    /// The latest session and its last seq, `None` before the first event.
    pub head: Option<(Arc<Session>, i64)>,
}

/// One stored event of a session.
#[derive(Debug)]
pub struct StoredEvent {
    /// Position in its session, from 1, gapless.
    pub seq: i64,
    /// The `event_type` as stored.
    pub event_type: String,
    /// The `content` as stored.
    pub content: String,
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

/// A row of the task list.
#[derive(Debug)]
pub struct TaskSummary {
    /// Task id.
    pub id: String,
    /// Task title.
    pub title: String,
    /// Task status.
    pub status: String,
}

/// A failed database operation. Callers answer `503` (or end a stream so that the client
/// resumes by cursor); the text says which operation failed and why.
#[derive(Debug)]
pub struct DbError {
    kind: QueryKind,
    source: DbErrorSource,
}

#[derive(Debug)]
enum DbErrorSource {
    Pool(PoolError),
    Query(tokio_postgres::Error),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            DbErrorSource::Pool(e) => {
                write!(f, "{:?} query: no database connection: {e}", self.kind)
            }
            DbErrorSource::Query(e) => write!(f, "{:?} query failed: {e}", self.kind),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.source {
            DbErrorSource::Pool(e) => Some(e),
            DbErrorSource::Query(e) => Some(e),
        }
    }
}

/// The connection pool and the queries that run on it.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Connection settings for `url`, with the timeouts every connection of ours gets.
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("taskstream");
    }
    Ok(config)
}

impl Db {
    /// A pool of at most `size` connections, each with `statement_timeout` set. Connections are
    /// opened lazily, so this does not fail when PostgreSQL is down.
    pub fn new(
        mut config: tokio_postgres::Config,
        size: usize,
        statement_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Db {
        config.options(format!(
            "-c statement_timeout={}",
            statement_timeout.as_millis()
        ));
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .expect("a pool with a runtime and timeouts set always builds");
        Db { pool, metrics }
    }

    /// The position of one task, `None` if it does not exist.
    pub async fn position(&self, task_id: &str) -> Result<Option<TaskPosition>, DbError> {
        let rows = self
            .query(QueryKind::Position, POSITION_SQL, &[&task_id])
            .await?;
        Ok(rows.first().map(|row| position_from(row, 0)))
    }

    /// The positions of many tasks at once; tasks that no longer exist are absent.
    pub async fn positions(
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

    /// Up to `limit` events of `session` after `after`, in seq order.
    pub async fn events(
        &self,
        session: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, DbError> {
        let rows = self
            .query(QueryKind::Events, EVENTS_SQL, &[&session, &after, &limit])
            .await?;
        Ok(rows
            .iter()
            .map(|row| StoredEvent {
                seq: row.get(0),
                event_type: row.get(1),
                content: row.get(2),
            })
            .collect())
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
        Ok(rows.iter().map(summary_from).collect())
    }

    /// One task's title and status, `None` if it does not exist.
    pub async fn task(&self, task_id: &str) -> Result<Option<TaskSummary>, DbError> {
        let rows = self.query(QueryKind::Task, TASK_SQL, &[&task_id]).await?;
        Ok(rows.first().map(summary_from))
    }

    /// Whether PostgreSQL answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.query(QueryKind::Ping, "SELECT 1", &[]).await.map(drop)
    }

    async fn query(
        &self,
        kind: QueryKind,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        let started = Instant::now();
        let result = async {
            let client = self.pool.get().await.map_err(DbErrorSource::Pool)?;
            let statement = client
                .prepare_cached(sql)
                .await
                .map_err(DbErrorSource::Query)?;
            client
                .query(&statement, params)
                .await
                .map_err(DbErrorSource::Query)
        }
        .await;
        self.metrics
            .record_query(kind, started.elapsed().as_secs_f64());
        result.map_err(|source| DbError { kind, source })
    }
}

/// Reads id, title and status from `row`.
fn summary_from(row: &Row) -> TaskSummary {
    TaskSummary {
        id: row.get(0),
        title: row.get(1),
        status: row.get(2),
    }
}

/// Reads status, session id, started_at and last_seq from `row`, starting at column `first`.
fn position_from(row: &Row, first: usize) -> TaskPosition {
    let status: &str = row.get(first);
    let session: Option<String> = row.get(first + 1);
    TaskPosition {
        in_progress: status == IN_PROGRESS,
        head: session.map(|id| {
            let started_at: i64 = row.get(first + 2);
            let last_seq: i64 = row.get(first + 3);
            (Arc::new(Session::new(id, started_at)), last_seq)
        }),
    }
}

/// Applies `schema.sql` on a fresh connection to `url` (safe to run concurrently).
pub async fn apply_schema(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = pg_config(url)?.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(SCHEMA).await;
    drop(client);
    let _ = driver.await;
    result
}
