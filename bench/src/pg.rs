//! How the benchmark connects to PostgreSQL: every connection carries the application name
//! [`APPLICATION`], so that counting the server's connections leaves the benchmark's own out,
//! and errors carry PostgreSQL's own message.

use tokio_postgres::{Client, NoTls};

/// The `application_name` of every connection the benchmark opens.
pub const APPLICATION: &str = "taskstream-bench";

/// Connects and drives the connection in the background.
pub async fn connect(url: &str) -> Result<Client, String> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| format!("database URL {url:?}: {e}"))?;
    config.application_name(APPLICATION);
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("connect to PostgreSQL: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// An error with PostgreSQL's own message (tokio-postgres displays a server error as just
/// "db error").
pub fn pg_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => error.to_string(),
    }
}
