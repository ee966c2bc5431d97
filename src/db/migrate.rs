//! Migrations: bring a database to this binary's schema version (`taskstream migrate`, the
//! server with `--migrate true`, the tests, the benchmark), or only check it (`--migrate
//! false`).
//!
//! `schema.sql` is applied only to a database whose recorded version is lower, never downward.
//! It runs with a short `lock_timeout`: a step that needs a table lock (a new trigger, a new
//! constraint) waits at most that long, so writers queued behind the migration stall at most
//! that long too. The whole file is then retried with backoff (every step is idempotent) until
//! [`MigrateOptions::deadline`]; past it, the error names the transactions that held the locks.

use std::fmt;
use std::future::poll_fn;
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use super::notify_settings::{self, PayloadMode};
use super::pg_config;
use super::schema::{SCHEMA, SchemaVersion, schema_version};
use super::version::{Recorded, Verdict, read_recorded, verdict};

/// How long one attempt waits for a lock. Writers that queue behind a waiting migration wait
/// at most this long.
const LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// The default of [`MigrateOptions::deadline`]: how long a migration keeps retrying.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(60);

/// First wait between attempts; doubled up to [`MAX_BACKOFF`], with jitter so that instances
/// that start together do not retry together.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The prefix of the notices `schema.sql` reports its steps with.
const STEP_PREFIX: &str = "taskstream: ";

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Retry locks that are not granted for up to this long, then fail naming the blockers.
    pub deadline: Duration,
    /// Set the notification payload mode (after the schema is current).
    pub notify_payload: Option<PayloadMode>,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            deadline: DEFAULT_DEADLINE,
            notify_payload: None,
        }
    }
}

/// What a migration (or a check) found and did.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The database's schema before.
    pub found: Recorded,
    /// The database's schema after (`found` when nothing was applied).
    pub now: Recorded,
    /// What it did, one line per step, in order (empty when nothing was applied). Warnings
    /// start with `warning: `.
    pub steps: Vec<String>,
}

impl Migration {
    /// The database's version when it is newer than this binary's: it keeps serving, and
    /// should say so (a rolling deploy, or a binary that was not upgraded).
    pub fn newer(&self) -> Option<SchemaVersion> {
        match verdict(schema_version(), self.now) {
            Verdict::NewerReadable(at) => Some(at),
            _ => None,
        }
    }

    /// Every line of what happened, for `taskstream migrate` to print.
    pub fn lines(&self) -> Vec<String> {
        let binary = schema_version();
        let mut lines = Vec::new();
        if let Some(newer) = self.newer() {
            lines.push(newer_warning(newer, binary));
        } else if self.found == self.now {
            lines.push(format!("{} is current; nothing to apply", self.now));
        } else {
            lines.push(format!("{} → {}", self.found, self.now));
        }
        lines.extend(self.steps.iter().map(|step| format!("  {step}")));
        lines
    }
}

/// The warning of a binary serving a newer schema.
fn newer_warning(newer: SchemaVersion, binary: SchemaVersion) -> String {
    format!(
        "the database's schema is version {}, newer than this taskstream's {}; it is left as \
         it is and served (its min_reader is {}): upgrade this instance",
        newer.version, binary.version, newer.min_reader
    )
}

/// Why a migration or a check failed.
#[derive(Debug)]
pub enum MigrateError {
    /// The database URL does not parse, or PostgreSQL cannot be reached.
    Connect(tokio_postgres::Error),
    /// PostgreSQL refused a step.
    Failed(tokio_postgres::Error),
    /// Locks were not granted before the deadline.
    Blocked {
        /// How long it tried.
        waited: Duration,
        /// Who held locks on taskstream's tables (or its migration lock) at the last attempt.
        blockers: Vec<Blocker>,
    },
    /// The database's schema is newer than this binary can serve.
    TooNew {
        /// The database's.
        found: SchemaVersion,
        /// This binary's.
        binary: SchemaVersion,
    },
    /// Without migrations (`--migrate false`): the schema is missing or older.
    NotMigrated {
        /// The database's.
        found: Recorded,
        /// This binary's.
        binary: SchemaVersion,
    },
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Connect(e) => write!(f, "cannot reach PostgreSQL: {}", reason(e)),
            MigrateError::Failed(e) => write!(f, "the migration failed: {}", reason(e)),
            MigrateError::Blocked { waited, blockers } => {
                write!(
                    f,
                    "the migration could not take its locks within {} s; ",
                    waited.as_secs()
                )?;
                if blockers.is_empty() {
                    f.write_str("no transaction holds a lock on taskstream's tables any more")
                } else {
                    f.write_str("blocked by ")?;
                    for (i, blocker) in blockers.iter().enumerate() {
                        if i > 0 {
                            f.write_str("; ")?;
                        }
                        blocker.fmt(f)?;
                    }
                    Ok(())
                }
            }
            MigrateError::TooNew { found, binary } => write!(
                f,
                "the database's schema is version {}, which needs a taskstream built for \
                 schema version {} or newer; this one is built for {}",
                found.version, found.min_reader, binary.version
            ),
            MigrateError::NotMigrated { found, binary } => write!(
                f,
                "the database has {found}, and this taskstream needs schema version {}: run \
                 `taskstream migrate` as the schema's owner (or start with --migrate true)",
                binary.version
            ),
        }
    }
}

impl std::error::Error for MigrateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MigrateError::Connect(e) | MigrateError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// PostgreSQL's own message, with its detail and hint (tokio-postgres shows a server error as
/// just "db error").
pub fn reason(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
    };
    let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text
}

/// A transaction that held a lock the migration needed.
#[derive(Debug, Clone)]
pub struct Blocker {
    /// Its backend's pid (`pg_terminate_backend` takes it).
    pub pid: i32,
    /// Its login.
    pub user: String,
    /// Its `application_name`.
    pub application: String,
    /// `active`, `idle in transaction`, … (empty when not visible to the migrating login).
    pub state: String,
    /// How long its transaction had been open, in seconds, when visible.
    pub open_for: Option<f64>,
    /// The start of its last statement, when visible.
    pub query: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (user {:?}, application {:?}",
            self.pid, self.user, self.application
        )?;
        if !self.state.is_empty() {
            write!(f, ", {}", self.state)?;
        }
        if let Some(open_for) = self.open_for {
            write!(f, ", transaction open for {open_for:.0} s")?;
        }
        write!(f, ", last statement {:?})", self.query)
    }
}

/// The transactions, other than ours, holding a lock on taskstream's tables or its migration
/// lock (the advisory lock of `schema.sql`, whose key a unit test holds equal to this one).
const BLOCKERS_SQL: &str = "
    SELECT a.pid, coalesce(a.usename::text, ''), coalesce(a.application_name, ''),
           coalesce(a.state, ''), extract(epoch FROM now() - a.xact_start)::float8,
           left(coalesce(a.query, ''), 200)
    FROM pg_stat_activity a
    WHERE a.pid <> pg_backend_pid() AND a.pid IN (
        SELECT l.pid FROM pg_locks l
        WHERE l.granted AND l.database = (SELECT oid FROM pg_database
                                          WHERE datname = current_database())
          AND (l.relation IN (to_regclass('tasks'), to_regclass('agent_sessions'),
                              to_regclass('agent_events'))
               OR (l.locktype = 'advisory' AND l.objid = 7415337)))
    ORDER BY a.xact_start";

/// Brings the database at `url` to this binary's schema version, as its owner: applies
/// `schema.sql` when the recorded version is lower (retrying lock timeouts until
/// `options.deadline`), leaves a newer one as it is, and sets the payload mode if asked.
pub async fn migrate(url: &str, options: &MigrateOptions) -> Result<Migration, MigrateError> {
    let mut db = Connection::open(url).await?;
    let found = db.recorded().await?;
    let mut steps = match verdict(schema_version(), found) {
        Verdict::Older => match db.apply(options.deadline).await {
            Ok(steps) => steps,
            // Refused because another instance, of this version or newer, migrated meanwhile
            // (the file never migrates downward): fine, unless the database is still older.
            Err(MigrateError::Failed(error)) => {
                let now = db.recorded().await?;
                if verdict(schema_version(), now) == Verdict::Older {
                    return Err(MigrateError::Failed(error));
                }
                Vec::new()
            }
            Err(error) => return Err(error),
        },
        Verdict::TooNew(at) => return Err(too_new(at)),
        Verdict::Current | Verdict::NewerReadable(_) => Vec::new(),
    };
    let now = db.recorded().await?;
    if let Verdict::TooNew(at) = verdict(schema_version(), now) {
        // Another, newer binary migrated meanwhile.
        return Err(too_new(at));
    }
    if let Some(mode) = options.notify_payload {
        let old = notify_settings::set_payload(&db.client, mode)
            .await
            .map_err(MigrateError::Failed)?;
        steps.push(match old {
            Some(old) if old == mode => format!("notification payloads: {mode} (unchanged)"),
            Some(old) => format!("notification payloads: {mode} (was {old})"),
            None => format!("notification payloads: {mode}"),
        });
    }
    Ok(Migration { found, now, steps })
}

/// [`migrate`] with the default options: what the tests and the benchmark apply to their
/// fresh databases.
pub async fn apply_schema(url: &str) -> Result<Migration, MigrateError> {
    migrate(url, &MigrateOptions::default()).await
}

/// Checks, without any DDL, that this binary can serve the database at `url` (`--migrate
/// false`): the schema must be this binary's version, or newer down to its `min_reader`.
pub async fn check(url: &str) -> Result<Migration, MigrateError> {
    let db = Connection::open(url).await?;
    let found = db.recorded().await?;
    match verdict(schema_version(), found) {
        Verdict::Current | Verdict::NewerReadable(_) => Ok(Migration {
            found,
            now: found,
            steps: Vec::new(),
        }),
        Verdict::Older => Err(MigrateError::NotMigrated {
            found,
            binary: schema_version(),
        }),
        Verdict::TooNew(at) => Err(too_new(at)),
    }
}

fn too_new(found: SchemaVersion) -> MigrateError {
    MigrateError::TooNew {
        found,
        binary: schema_version(),
    }
}

/// The migration's own connection, whose notices (the steps `schema.sql` reports) are kept.
struct Connection {
    client: Client,
    notices: mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
}

impl Connection {
    async fn open(url: &str) -> Result<Connection, MigrateError> {
        let config = pg_config(url).map_err(MigrateError::Connect)?;
        let (client, mut connection) =
            config.connect(NoTls).await.map_err(MigrateError::Connect)?;
        let (sender, notices) = mpsc::unbounded_channel();
        // Ends when the client is dropped (the connection closes).
        tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notice(notice) = message {
                    let _ = sender.send(notice);
                }
            }
        });
        client
            .batch_execute(&format!("SET lock_timeout = {}", LOCK_TIMEOUT.as_millis()))
            .await
            .map_err(MigrateError::Failed)?;
        Ok(Connection { client, notices })
    }

    /// The version the database records.
    async fn recorded(&self) -> Result<Recorded, MigrateError> {
        read_recorded(&self.client)
            .await
            .map_err(MigrateError::Failed)
    }

    /// Applies `schema.sql`, retrying lock timeouts until `deadline` has passed; returns the
    /// steps of the attempt that succeeded.
    async fn apply(&mut self, deadline: Duration) -> Result<Vec<String>, MigrateError> {
        let started = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            while self.notices.try_recv().is_ok() {}
            let Err(error) = self.client.batch_execute(SCHEMA).await else {
                return Ok(self.steps());
            };
            // The file stopped inside one of its transactions.
            let _ = self.client.batch_execute("ROLLBACK").await;
            if error.code() != Some(&SqlState::LOCK_NOT_AVAILABLE) {
                return Err(MigrateError::Failed(error));
            }
            let wait = jittered(backoff);
            if started.elapsed() + wait >= deadline {
                return Err(MigrateError::Blocked {
                    waited: started.elapsed(),
                    blockers: self.blockers().await,
                });
            }
            tracing::info!(?wait, "migration: a lock was not granted in time; retrying");
            tokio::time::sleep(wait).await;
            backoff = next_backoff(backoff);
        }
    }

    /// The steps reported since the last attempt began.
    fn steps(&mut self) -> Vec<String> {
        let mut steps = Vec::new();
        while let Ok(notice) = self.notices.try_recv() {
            if let Some(step) = notice.message().strip_prefix(STEP_PREFIX) {
                steps.push(if notice.severity() == "WARNING" {
                    format!("warning: {step}")
                } else {
                    step.to_owned()
                });
            }
        }
        steps
    }

    async fn blockers(&self) -> Vec<Blocker> {
        let Ok(rows) = self.client.query(BLOCKERS_SQL, &[]).await else {
            return Vec::new();
        };
        rows.iter()
            .map(|row| Blocker {
                pid: row.get(0),
                user: row.get(1),
                application: row.get(2),
                state: row.get(3),
                open_for: row.get(4),
                query: row.get(5),
            })
            .collect()
    }
}

/// The wait after `backoff`: doubled, at most [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    backoff.saturating_mul(2).min(MAX_BACKOFF)
}

/// `backoff` less up to a quarter, at random.
fn jittered(backoff: Duration) -> Duration {
    let random = RandomState::new().hash_one(Instant::now());
    let quarter = backoff / 4;
    let nanos = u64::try_from(quarter.as_nanos()).unwrap_or(u64::MAX);
    backoff - Duration::from_nanos(random.checked_rem(nanos).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blockers_query_watches_the_lock_schema_sql_takes() {
        let keys: Vec<&str> = SCHEMA
            .split("pg_advisory_xact_lock(")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
            .collect();
        assert!(!keys.is_empty(), "schema.sql takes an advisory lock");
        for key in keys {
            assert!(
                BLOCKERS_SQL.contains(&format!("l.objid = {key})")),
                "BLOCKERS_SQL watches lock {key}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_below() {
        assert_eq!(next_backoff(MIN_BACKOFF), MIN_BACKOFF * 2);
        assert_eq!(next_backoff(MAX_BACKOFF), MAX_BACKOFF);
        assert_eq!(next_backoff(Duration::MAX), MAX_BACKOFF);
        for _ in 0..100 {
            let wait = jittered(Duration::from_secs(4));
            assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(4));
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_blocker_is_named_with_what_an_operator_needs() {
        let blocker = Blocker {
            pid: 42,
            user: "agent".into(),
            application: "psql".into(),
            state: "idle in transaction".into(),
            open_for: Some(61.2),
            query: "INSERT INTO agent_events …".into(),
        };
        let error = MigrateError::Blocked {
            waited: Duration::from_secs(60),
            blockers: vec![blocker],
        };
        assert_eq!(
            error.to_string(),
            "the migration could not take its locks within 60 s; blocked by pid 42 (user \
             \"agent\", application \"psql\", idle in transaction, transaction open for 61 s, \
             last statement \"INSERT INTO agent_events …\")"
        );
    }

    #[test]
    fn without_migrations_the_message_names_the_command() {
        let error = MigrateError::NotMigrated {
            found: Recorded::Missing,
            binary: schema_version(),
        };
        let text = error.to_string();
        assert!(text.contains("`taskstream migrate`"), "{text}");
        assert!(!text.contains('\n'), "one line: {text}");
    }
}
