//! taskstream: streams live AI-agent events from PostgreSQL as Server-Sent Events.
//!
//! # Layout
//! - [`config`]: every tunable, its default and why.
//! - [`server`]: the accept loop and connections; [`tls`]: optional HTTPS; [`routes`]: the one
//!   `match` over method and path; [`request`] reads task ids and cursors; [`response`] builds
//!   responses; [`auth`]: optional JWT authentication; [`cors`]: optional cross-origin reads.
//! - [`app`]: the state every request and stream shares.
//! - [`stream`]: one client's stream task (replay, then live frames, then `complete`).
//! - [`hub`]: the shared tail of each watched task and the safety-net poll; [`tail`]: what one
//!   tail does; [`listener`]: the LISTEN connection that feeds them.
//! - [`db`]: every SQL query and the connection pool; the schema is `schema.sql`.
//! - [`sse`]: the wire format; [`event`]: how a stored row becomes an event; [`cursor`]: the
//!   resume position carried in each event's id.
//! - [`viewer`]: the task list at `/` and the live page of a task, embedded in the binary.
//! - [`metrics`]: counters, also served at `/metrics`; [`shutdown`]: the shutdown signal.
//! - [`embedded_pg`]: a private PostgreSQL cluster for `cargo run`, tests and the benchmark;
//!   [`demo`]: the demo agent that writes events into it.

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

pub mod app;
pub mod client_stream;
pub mod config;
pub mod db;
pub mod demo;
pub mod embedded_pg;
pub mod http;
pub mod live;
pub mod metrics;
pub mod shutdown;
pub mod viewer;
pub mod wire;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::config::Config;
use crate::db::Db;
use crate::live::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::ShutdownTrigger;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database URL does not parse.
    DatabaseUrl(tokio_postgres::Error),
    /// PostgreSQL could not be reached, or refused the schema.
    Database(tokio_postgres::Error),
    /// The listen address could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// The TLS certificate or key could not be used.
    Tls(http::tls::TlsError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::DatabaseUrl(e) => write!(f, "invalid database URL: {e}"),
            StartError::Database(e) => write!(f, "cannot use PostgreSQL: {e}"),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::DatabaseUrl(e) | StartError::Database(e) => Some(e),
            StartError::Bind(_, e) => Some(e),
            StartError::Tls(e) => Some(e),
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    hub: Hub,
    trigger: ShutdownTrigger,
    serving: JoinHandle<()>,
}

impl Handle {
    /// The address it listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The number of live tails (watched tasks).
    pub fn tail_count(&self) -> usize {
        self.hub.tail_count()
    }

    /// Starts a graceful shutdown: stop accepting, end every stream, drain connections.
    pub fn shutdown(&self) {
        self.trigger.trigger();
    }

    /// Waits until the server has stopped (after [`Handle::shutdown`]).
    pub async fn stopped(self) {
        let _ = self.serving.await;
    }
}

/// Starts a server: applies the schema, opens the pool and the LISTEN connection, binds
/// `listen` and serves until [`Handle::shutdown`].
pub async fn start(
    config: Config,
    database_url: &str,
    listen: SocketAddr,
) -> Result<Handle, StartError> {
    let mut config = config;
    if config.pool_size > 1 && config.max_replays >= config.pool_size {
        // Client reads must leave the tails, the poll and /readyz a connection.
        tracing::warn!(
            max_replays = config.max_replays,
            pool_size = config.pool_size,
            "max-replays lowered to pool-size - 1"
        );
        config.max_replays = config.pool_size - 1;
    }
    let pg_config = db::pg_config(database_url).map_err(StartError::DatabaseUrl)?;
    let tls = config
        .tls
        .as_ref()
        .map(http::tls::acceptor)
        .transpose()
        .map_err(StartError::Tls)?;
    db::apply_schema(database_url)
        .await
        .map_err(StartError::Database)?;

    let metrics = Arc::new(Metrics::default());
    let db = Db::new(
        pg_config.clone(),
        config.pool_size,
        config.statement_timeout,
        metrics.clone(),
    );
    let hub = Hub::new(db.clone(), config.replay_batch, metrics.clone());
    let (trigger, shutdown) = shutdown::channel();

    if config.notify {
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(live::pg_listener::run(
            pg_config,
            hub.clone(),
            metrics.clone(),
            ready_tx,
            shutdown.clone(),
        ));
        // LISTEN is in place before any state is read.
        if let Ok(Err(error)) = ready_rx.await {
            trigger.trigger();
            return Err(StartError::Database(error));
        }
    }
    tokio::spawn(
        hub.clone()
            .run_poller(config.poll_interval, shutdown.clone()),
    );

    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            trigger.trigger();
            return Err(StartError::Bind(listen, error));
        }
    };
    let addr = listener
        .local_addr()
        .map_err(|error| StartError::Bind(listen, error))?;

    let app = Arc::new(app::App::new(
        config,
        db,
        hub.clone(),
        metrics.clone(),
        shutdown,
    ));
    let serving = tokio::spawn(http::server::serve(listener, app, tls));
    Ok(Handle {
        addr,
        metrics,
        hub,
        trigger,
        serving,
    })
}

/// Raises this process's soft limit on open files to its hard limit and returns the new limit.
/// Every stream is a socket: the common default soft limit (1024) would cap a server, a test or
/// the benchmark at about a thousand streams.
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}
