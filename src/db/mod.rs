//! Storage: the connection pool and every SQL statement of the server, in this folder and
//! nowhere else ([`reads`]: what streams and pages read; [`writes`]: what an agent writes;
//! [`schema`]: `schema.sql` itself).

mod reads;
mod schema;
pub mod seats;
mod writes;

#[cfg(test)]
pub(crate) use self::reads::fixtures;
pub(crate) use self::reads::{Session, TaskPosition};
pub use self::reads::{TaskListing, TaskSummary};
pub use self::schema::{SCHEMA, apply_schema};
pub(crate) use self::writes::{insert_event, set_status, start_task};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use crate::metrics::{Metrics, QueryKind};

/// The status in which a task's stream stays open.
pub(crate) const IN_PROGRESS: &str = "InProgress";

/// Notification channel of event inserts (see `schema.sql`).
pub(crate) const EVENTS_CHANNEL: &str = "taskstream_events";

/// Notification channel of task status changes and deletions.
pub(crate) const TASKS_CHANNEL: &str = "taskstream_tasks";

/// The statement that subscribes a connection to both channels.
pub(crate) fn listen_statement() -> String {
    format!("LISTEN {EVENTS_CHANNEL}; LISTEN {TASKS_CHANNEL}")
}

/// The statement that ends a connection's LISTENs (bus mode, when NATS is back).
pub(crate) const UNLISTEN_STATEMENT: &str = "UNLISTEN *";

/// Longest wait for a pooled connection before a request gives up with `503`.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for a new database connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
