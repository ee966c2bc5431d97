//! Storage: the connection pool and every SQL statement of the server, in this folder and
//! nowhere else ([`reads`]: what streams and pages read; [`writes`]: what an agent writes;
//! [`schema`]: `schema.sql` itself and its version; [`version`]: the version a database
//! records and what it means for this binary; [`migrate`]: applying the schema, or checking
//! it; [`notify_settings`]: the notification key and payload mode; [`api_writes`]: what the
//! JSON API writes, and its idempotency keys).

mod api_writes;
mod connect;
mod error;
mod migrate;
mod notify_settings;
mod reads;
mod schema;
pub mod seats;
mod version;
mod writes;

pub(crate) use self::api_writes::{Answer, EventBatch, KEY_WAIT, KeyClaim, Keyed};
pub(crate) use self::error::Refusal;
pub use self::error::{Cause, DbError};
pub use self::migrate::{
    Blocker, DEFAULT_DEADLINE, MigrateError, MigrateOptions, Migration, apply_schema, check,
    migrate, reason,
};
pub use self::notify_settings::PayloadMode;
pub(crate) use self::notify_settings::read as read_notify_settings;
#[cfg(test)]
pub(crate) use self::reads::fixtures;
pub(crate) use self::reads::{EventPage, PageLimit, Session, TaskPosition};
pub use self::reads::{TaskListing, TaskSummary};
pub use self::schema::{SCHEMA, SchemaVersion, schema_version};
pub use self::version::Recorded;
pub(crate) use self::writes::{insert_event, set_status, start_task};

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use self::connect::Connector;
use self::error::DbErrorSource;
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

/// How much longer than `statement_timeout` a query may take before the client gives up on it.
/// PostgreSQL cancels a slow query itself first and says so; the client-side deadline is for a
/// database that stops answering without resetting the connection (a frozen host, a network
/// that drops packets), which TCP would otherwise notice only after many minutes, and for
/// poolers where `statement_timeout` cannot be set at connect.
const DEADLINE_MARGIN: Duration = Duration::from_secs(1);

/// The connection pool and the queries that run on it.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// Longest a query (its prepare and its rows) may take before its connection is dropped.
    deadline: Duration,
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
    /// A pool of at most `size` connections, each with `statement_timeout` set (where the
    /// server allows it), and a client-side deadline slightly above it on every query.
    /// Connections are opened lazily, so this does not fail when PostgreSQL is down.
    pub fn new(
        config: tokio_postgres::Config,
        size: usize,
        statement_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Db {
        let connector = Connector::new(&config, statement_timeout);
        let manager = Manager::from_connect(
            config,
            connector,
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
        Db {
            pool,
            deadline: statement_timeout + DEADLINE_MARGIN,
            metrics,
        }
    }

    async fn query(
        &self,
        kind: QueryKind,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        self.on_client(kind, async |client| {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        })
        .await
    }

    /// Runs `run` on a pooled connection within the client-side deadline, counted as one query
    /// of `kind`. A connection that misses the deadline is [`abandon`]ed, never handed back to
    /// the pool in the middle of a statement.
    async fn on_client<T>(
        &self,
        kind: QueryKind,
        run: impl AsyncFnOnce(&mut Object) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, DbError> {
        let started = Instant::now();
        let result = async {
            let mut client = self.pool.get().await.map_err(DbErrorSource::Pool)?;
            let outcome = tokio::time::timeout(self.deadline, run(&mut client)).await;
            match outcome {
                Ok(result) => result.map_err(DbErrorSource::Query),
                Err(_) => {
                    abandon(client);
                    Err(DbErrorSource::Deadline(self.deadline))
                }
            }
        }
        .await;
        self.metrics
            .record_query(kind, started.elapsed().as_secs_f64());
        result.map_err(|source| DbError { kind, source })
    }
}

/// Gives up on a connection whose query did not answer in time: it leaves the pool (which may
/// open a fresh one), and PostgreSQL is asked to cancel the query in case it is only slow.
fn abandon(client: Object) {
    let cancel = client.cancel_token();
    drop(Object::take(client));
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, cancel.cancel_query(NoTls)).await;
    });
}
