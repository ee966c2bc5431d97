//! The state every request and stream task shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::api::WriteGate;
use crate::config::Config;
use crate::db::Db;
use crate::http::auth::Auth;
use crate::http::cookie::CookiePolicy;
use crate::http::cors::Cors;
use crate::http::health::Health;
use crate::live::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How long a write waits for a turn on the pool (`--max-writes`) before it gets `503`.
const WRITE_QUEUE_WAIT: Duration = Duration::from_secs(1);

/// One running server's shared state. Lives as long as the server.
#[derive(Debug)]
pub(crate) struct App {
    /// The configuration it was started with.
    pub(crate) config: Config,
    /// The connection pool and its queries.
    pub(crate) db: Db,
    /// The shared tails that live frames come from.
    pub(crate) hub: Hub,
    /// Counters.
    pub(crate) metrics: Arc<Metrics>,
    /// Resolves when the server starts shutting down; every stream task watches it.
    pub(crate) shutdown: Shutdown,
    /// Token verification, when authentication is on.
    pub(crate) auth: Option<Auth>,
    /// The CORS policy, when CORS is on.
    pub(crate) cors: Option<Cors>,
    /// How the token cookie is set.
    pub(crate) cookies: CookiePolicy,
    /// What `/readyz` knows of the database.
    pub(crate) health: Health,
    /// One permit per open stream: `max_streams` in all.
    stream_slots: Arc<Semaphore>,
    /// One permit per client read running on the pool: `max_replays` in all. A reconnect storm
    /// queues here instead of taking every pooled connection from the tails and the poll.
    read_slots: Semaphore,
    /// One permit per JSON API write running on the pool: `max_writes` in all, apart from the
    /// reads' permits, so writes never starve stream starts.
    write_slots: Semaphore,
    /// Who may write, and whether the server can.
    pub(crate) writes: WriteGate,
}

impl App {
    /// The shared state of a server with `config`.
    pub(crate) fn new(
        config: Config,
        db: Db,
        hub: Hub,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        writes: WriteGate,
    ) -> App {
        let auth = config.jwt_secret.as_ref().map(|secret| {
            Auth::new(
                &secret.0,
                config.jwt_issuer.as_deref(),
                config.jwt_audience.as_deref(),
            )
        });
        let cors = Cors::new(&config.cors_origins, config.cors_credentials);
        App {
            stream_slots: Arc::new(Semaphore::new(config.max_streams)),
            read_slots: Semaphore::new(config.max_replays),
            write_slots: Semaphore::new(config.max_writes),
            writes,
            health: Health::default(),
            cookies: CookiePolicy::new(config.cookie_is_secure(), config.cors_credentials),
            auth,
            cors,
            config,
            db,
            hub,
            metrics,
            shutdown,
        }
    }

    /// A new stream's permit, held for the stream's life, or why it may not open (`503`): the
    /// server is shutting down, or `max_streams` are open.
    pub(crate) fn stream_slot(&self) -> Result<OwnedSemaphorePermit, &'static str> {
        if self.shutdown.is_triggered() {
            return Err("shutting down");
        }
        self.stream_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| "too many open streams")
    }

    /// Waits for a turn to read from the pool on behalf of a client (stream start, replay).
    pub(crate) async fn read_slot(&self) -> SemaphorePermit<'_> {
        if let Ok(permit) = self.read_slots.try_acquire() {
            return permit;
        }
        self.metrics.reads_waiting.inc();
        let permit = self
            .read_slots
            .acquire()
            .await
            .expect("the read semaphore is never closed");
        self.metrics.reads_waiting.dec();
        permit
    }

    /// A turn to write on the pool, waiting at most [`WRITE_QUEUE_WAIT`]; `None` when none
    /// came (`503`).
    pub(crate) async fn write_slot(&self) -> Option<SemaphorePermit<'_>> {
        match tokio::time::timeout(WRITE_QUEUE_WAIT, self.write_slots.acquire()).await {
            Ok(Ok(permit)) => Some(permit),
            _ => None,
        }
    }
}
