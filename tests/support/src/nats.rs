//! Bus mode in the tests: a private NATS server for each test that needs one, the configuration
//! of an instance in bus mode, and what PostgreSQL and NATS show of the listeners and
//! subscriptions.

use std::path::Path;

use taskstream::Config;
use taskstream::db::seats::SEAT_LOCK_CLASS;
use taskstream::embedded_nats::NatsServer;
use tokio_postgres::Client;

use crate::http::Response;
use crate::server::fast_config;

/// A private NATS server, stopped when dropped or when the test process ends.
pub async fn start_nats() -> NatsServer {
    start_nats_with(|_| Ok(Vec::new())).await
}

/// A private NATS server with more arguments (see [`NatsServer::start_with`]).
pub async fn start_nats_with(
    extra: impl FnOnce(&Path) -> Result<Vec<String>, String> + Send + 'static,
) -> NatsServer {
    tokio::task::spawn_blocking(|| NatsServer::start_with(extra))
        .await
        .expect("NATS thread")
        .unwrap_or_else(|e| panic!("test NATS server: {e}"))
}

/// The tests' fast configuration in bus mode on `nats`, with `pg_listeners` seats.
pub fn bus_config(nats: &NatsServer, pg_listeners: u16) -> Config {
    let mut config = fast_config();
    config.bus.nats_urls = vec![nats.url()];
    config.bus.pg_listeners = pg_listeners;
    config
}

/// Backends of `db`'s database that LISTEN: those whose last statement was a LISTEN (a
/// LISTEN connection runs nothing after it while it listens).
pub async fn listen_backends(db: &Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query LIKE 'LISTEN %'",
        &[],
    )
    .await
    .expect("count LISTEN backends")
    .get(0)
}

/// Listener seats held in `db`'s database (granted advisory locks of the seat class).
pub async fn seats_held(db: &Client) -> i64 {
    db.query_one(
        &format!(
            "SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND granted AND classid = {SEAT_LOCK_CLASS}
               AND objsubid = 2
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        &[],
    )
    .await
    .expect("count seats")
    .get(0)
}

/// Subscriptions the NATS server holds for its clients (not its own internal ones), from its
/// monitoring endpoint.
pub async fn server_subscriptions(nats: &NatsServer) -> u64 {
    let response = Response::get(nats.monitor_addr(), "/connz", &[]).await;
    let connz = response.json().await;
    let connections = connz["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("no connections in {connz}"));
    connections
        .iter()
        .map(|connection| connection["subscriptions"].as_u64().unwrap_or_default())
        .sum()
}
