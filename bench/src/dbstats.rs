//! The benchmark's side of PostgreSQL: a fresh database per run (copied from a template that
//! holds `schema.sql`), and what the database saw during a run (transactions, connections).

use tokio_postgres::Client;

use crate::pg::{APPLICATION, connect, pg_error};
use crate::session::Session;

/// The template every run's database is copied from.
const TEMPLATE: &str = "bench_template";

/// The URL of `database` on the same server as `url` (whose own database and query, if any,
/// are dropped).
pub fn url_of(url: &str, database: &str) -> String {
    let host_at = url.find("://").map_or(0, |at| at + 3);
    let base = match url[host_at..].find(['/', '?']) {
        Some(end) => &url[..host_at + end],
        None => url,
    };
    format!("{base}/{database}")
}

/// A connection for creating and watching run databases.
#[derive(Debug)]
pub struct Monitor {
    client: Client,
    /// The URL it is connected to: the maintenance database of the benchmark's own cluster,
    /// or the database given with `--database-url`.
    url: String,
    /// `Some(name)`: every run shares that given database (its tasks get a unique prefix);
    /// `None`: each run gets a database of its own on the benchmark's cluster.
    shared: Option<String>,
}

/// The database of one run.
#[derive(Debug, Clone)]
pub struct RunDb {
    /// Its name (for `pg_stat_database` and `pg_stat_activity`).
    pub name: String,
    /// Its URL.
    pub url: String,
    /// Prefix of the run's task ids (empty in a database of its own).
    pub prefix: String,
}

/// Counters of one database at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbCounters {
    /// `pg_stat_database.xact_commit` (PostgreSQL publishes backend statistics at most once a
    /// second, an idle backend's within ten: a delta over a short run trails).
    pub xact_commit: i64,
}

impl Monitor {
    /// Connects to `url` (the `postgres` database) and creates the template with the schema.
    pub async fn start(url: &str) -> Result<Monitor, String> {
        let client = connect(url).await?;
        let monitor = Monitor {
            client,
            url: url.to_owned(),
            shared: None,
        };
        // One statement per call: CREATE DATABASE refuses to run inside the implicit
        // transaction of a multi-statement query.
        for statement in [
            format!("DROP DATABASE IF EXISTS {TEMPLATE}"),
            format!("CREATE DATABASE {TEMPLATE}"),
        ] {
            monitor
                .client
                .batch_execute(&statement)
                .await
                .map_err(|e| format!("create the template database: {}", pg_error(&e)))?;
        }
        taskstream::db::apply_schema(&url_of(url, TEMPLATE))
            .await
            .map_err(|e| format!("apply schema.sql: {e}"))?;
        Ok(monitor)
    }

    /// Uses the database at `url` (which holds the schema: its server applied it) for every
    /// run.
    pub async fn shared(url: &str) -> Result<Monitor, String> {
        let client = connect(url).await?;
        let name: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(|e| format!("read the database name: {}", pg_error(&e)))?
            .get(0);
        Ok(Monitor {
            client,
            url: url.to_owned(),
            shared: Some(name),
        })
    }

    /// Whether runs share a database the benchmark does not own.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The database of run `number`: a fresh copy of the template, or the shared one.
    pub async fn create(&self, number: usize) -> Result<RunDb, String> {
        if let Some(name) = &self.shared {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            return Ok(RunDb {
                name: name.clone(),
                url: self.url.clone(),
                prefix: format!("bench{now}-{number}-"),
            });
        }
        let name = format!("bench_{number}");
        for statement in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"),
        ] {
            self.client
                .batch_execute(&statement)
                .await
                .map_err(|e| format!("create database {name}: {}", pg_error(&e)))?;
        }
        Ok(RunDb {
            url: url_of(&self.url, &name),
            name,
            prefix: String::new(),
        })
    }

    /// Drops a run's own database, disconnecting whoever is still on it (a shared database
    /// is left alone).
    pub async fn release(&self, db: &RunDb) -> Result<(), String> {
        if self.shared.is_some() {
            return Ok(());
        }
        let name = &db.name;
        self.client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|e| format!("drop database {name}: {}", pg_error(&e)))
    }

    /// The counters of database `name`.
    pub async fn counters(&self, name: &str) -> Result<DbCounters, String> {
        let row = self
            .client
            .query_one(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| format!("read pg_stat_database: {e}"))?;
        Ok(DbCounters {
            xact_commit: row.get(0),
        })
    }

    /// Connections to database `name` that are not the benchmark's own (the server's pool
    /// and LISTEN connection).
    pub async fn server_connections(&self, name: &str) -> Result<i64, String> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name <> $2",
                &[&name, &APPLICATION],
            )
            .await
            .map_err(|e| format!("read pg_stat_activity: {e}"))?;
        Ok(row.get(0))
    }

    /// PostgreSQL's version string.
    pub async fn version(&self) -> Result<String, String> {
        let row = self
            .client
            .query_one("SHOW server_version", &[])
            .await
            .map_err(|e| format!("read the server version: {e}"))?;
        Ok(row.get(0))
    }
}

/// Creates the sessions' tasks as running, so that their streams wait for events.
pub async fn create_tasks(client: &Client, sessions: &[Session]) -> Result<(), String> {
    let ids: Vec<&str> = sessions.iter().map(|s| s.task.as_str()).collect();
    client
        .execute(
            "INSERT INTO tasks (id, title, status) \
             SELECT id, 'benchmark', 'InProgress' FROM unnest($1::text[]) AS id",
            &[&ids],
        )
        .await
        .map_err(|e| format!("create tasks: {}", pg_error(&e)))?;
    Ok(())
}

/// Sets the notification payload mode of the run's database (`event` or `address`), as
/// `taskstream migrate --notify-payload` does; the triggers read it on every insert.
pub async fn set_notify_payload(client: &Client, mode: &str) -> Result<(), String> {
    client
        .execute(
            "UPDATE taskstream_notify_settings SET payload = $1",
            &[&mode],
        )
        .await
        .map_err(|e| format!("set the payload mode to {mode}: {}", pg_error(&e)))?;
    Ok(())
}

/// How many MACs [`mac_micros`] computes, and how many bytes each covers (an ordinary event's
/// notification).
const MAC_SAMPLES: i32 = 20_000;
const MAC_PAYLOAD_BYTES: i32 = 300;

/// What signing one notification costs PostgreSQL, in microseconds: the schema's own
/// `taskstream_signed` over [`MAC_SAMPLES`] payloads, less the same query building the payloads
/// without signing them.
pub async fn mac_micros(client: &Client) -> Result<f64, String> {
    let timed = |sql: &'static str| async move {
        let started = std::time::Instant::now();
        client
            .query_one(sql, &[&MAC_SAMPLES, &MAC_PAYLOAD_BYTES])
            .await
            .map_err(|e| format!("time the notification MAC: {}", pg_error(&e)))?;
        Ok::<f64, String>(started.elapsed().as_secs_f64())
    };
    let signed = timed(
        "SELECT count(taskstream_signed('taskstream_events', repeat('x', $2) || g, s.mac_key)) \
         FROM generate_series(1, $1) AS g, taskstream_notify_settings AS s",
    )
    .await?;
    let unsigned = timed(
        "SELECT count(repeat('x', $2) || g || s.mac_key) \
         FROM generate_series(1, $1) AS g, taskstream_notify_settings AS s",
    )
    .await?;
    Ok((signed - unsigned).max(0.0) * 1e6 / f64::from(MAC_SAMPLES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_of_replaces_the_database() {
        assert_eq!(
            url_of("postgres://postgres@127.0.0.1:5432/postgres", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            url_of("postgres://postgres@127.0.0.1:5432", "b1"),
            "postgres://postgres@127.0.0.1:5432/b1"
        );
        assert_eq!(
            url_of("postgres://u@h/db?sslmode=disable", "b1"),
            "postgres://u@h/b1"
        );
    }
}
