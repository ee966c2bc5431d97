//! The schema: `schema.sql`, applied by the server at start, the tests and the benchmark alike.

use tokio_postgres::NoTls;

use super::pg_config;

/// The schema, applied at startup by the server, the tests and the benchmark alike.
pub const SCHEMA: &str = include_str!("../../schema.sql");

/// Applies `schema.sql` on a fresh connection to `url` (safe to run concurrently).
pub async fn apply_schema(url: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = pg_config(url)?.connect(NoTls).await?;
    let driver = tokio::spawn(connection);
    let result = client.batch_execute(SCHEMA).await;
    drop(client);
    let _ = driver.await;
    result
}
