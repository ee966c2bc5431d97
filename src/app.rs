//! The state every request and stream task shares.

use std::sync::Arc;

use crate::config::Config;
use crate::db::Db;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// One running server's shared state. Lives as long as the server.
#[derive(Debug)]
pub struct App {
    /// The configuration it was started with.
    pub config: Config,
    /// The connection pool and its queries.
    pub db: Db,
    /// The shared tails that live frames come from.
    pub hub: Hub,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Resolves when the server starts shutting down; every stream task watches it.
    pub shutdown: Shutdown,
}
