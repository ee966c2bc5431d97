//! One running server: [`start`] wires the pool, the hub, the LISTEN connection (and in bus mode
//! NATS), the poll and the accept loop together, and [`Handle`] stops it.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::db::Db;
use crate::live::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::ShutdownTrigger;
use crate::{api, app, db, http, live, shutdown};

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// Settings that cannot work together.
    Config(config::InvalidConfig),
    /// The database URL does not parse.
    DatabaseUrl(tokio_postgres::Error),
    /// PostgreSQL could not be reached.
    Database(tokio_postgres::Error),
    /// The schema could not be migrated, or this binary cannot serve it.
    Schema(db::MigrateError),
    /// The listen address could not be bound.
    Bind(SocketAddr, std::io::Error),
    /// The TLS certificate or key could not be used.
    Tls(http::tls::TlsError),
    /// Bus mode could not start (NATS credentials or TLS files).
    Nats(live::bus::BusError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::DatabaseUrl(e) => write!(f, "invalid database URL: {e}"),
            StartError::Database(e) => write!(f, "cannot use PostgreSQL: {}", db::reason(e)),
            StartError::Schema(e) => e.fmt(f),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
            StartError::Nats(e) => write!(f, "cannot start bus mode: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::DatabaseUrl(e) | StartError::Database(e) => Some(e),
            StartError::Schema(e) => Some(e),
            StartError::Bind(_, e) => Some(e),
            StartError::Tls(e) => Some(e),
            StartError::Nats(e) => Some(e),
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

/// Starts a server: migrates or checks the schema (`--migrate`), opens the pool and the LISTEN
/// connection, binds `listen` and serves until [`Handle::shutdown`].
pub async fn start(
    config: Config,
    database_url: &str,
    listen: SocketAddr,
) -> Result<Handle, StartError> {
    let config = config.validate().map_err(StartError::Config)?;
    let pg_config = db::pg_config(database_url).map_err(StartError::DatabaseUrl)?;
    let tls = config
        .tls
        .as_ref()
        .map(http::tls::acceptor)
        .transpose()
        .map_err(StartError::Tls)?;
    let schema = if config.migrate {
        db::migrate(database_url, &db::MigrateOptions::default()).await
    } else {
        db::check(database_url).await
    }
    .map_err(|error| match error {
        db::MigrateError::Connect(error) => StartError::Database(error),
        error => StartError::Schema(error),
    })?;
    if let Some(newer) = schema.newer() {
        tracing::warn!(
            database = newer.version,
            binary = db::schema_version().version,
            min_reader = newer.min_reader,
            "the database's schema is newer than this taskstream's; serving it as it is \
             (never migrated downward): upgrade this instance"
        );
    }
    for step in &schema.steps {
        tracing::info!(step = %step, "migration");
    }

    let metrics = Arc::new(Metrics::default());
    let db = Db::new(
        pg_config.clone(),
        config.pool_size,
        config.statement_timeout,
        metrics.clone(),
    );
    let bus_mode = config.notify && config.bus.enabled();
    let (interest, changes) = live::interest::channel();
    let hub = Hub::new(
        db.clone(),
        config.page_limit(),
        metrics.clone(),
        bus_mode.then_some(interest),
    );
    let (trigger, shutdown) = shutdown::channel();

    if config.notify {
        let mode = if bus_mode {
            let bus = live::bus::start(
                &config.bus,
                hub.clone(),
                metrics.clone(),
                changes,
                shutdown.clone(),
            )
            .await;
            match bus {
                Ok(bus) => live::pg_listener::Mode::Bus {
                    seats: config.bus.pg_listeners,
                    fallback: config.bus.nats_fallback,
                    bus,
                },
                Err(error) => {
                    trigger.trigger();
                    return Err(StartError::Nats(error));
                }
            }
        } else {
            live::pg_listener::Mode::Plain
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        tokio::spawn(live::pg_listener::run(
            pg_config,
            mode,
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

    let writes = write_gate(&config, &db, listen).await;
    if writes.refused.is_none() {
        tokio::spawn(api::prune_keys(
            db.clone(),
            config.idempotency_window,
            shutdown.clone(),
        ));
    }
    let app = Arc::new(app::App::new(
        config,
        db,
        hub.clone(),
        metrics.clone(),
        shutdown,
        writes,
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

/// Who may write through the JSON API, and whether this server's login can: anonymous writes
/// (authentication off) only on loopback or with `--allow-anonymous-writes`; without the
/// rights, writes answer `503` with the reason and reads go on.
async fn write_gate(config: &Config, db: &Db, listen: SocketAddr) -> api::WriteGate {
    let loopback = listen.ip().is_loopback();
    let anonymous = config.allow_anonymous_writes || loopback;
    let refused = match db.missing_write_privileges().await {
        Ok(missing) if missing.is_empty() => None,
        Ok(missing) => Some(format!(
            "writes are off: the server's database login lacks {} (grant it taskstream_writer \
             and taskstream_server)",
            missing.join(", ")
        )),
        Err(error) => Some(format!(
            "writes are off: the server could not check its database rights at start: {error}"
        )),
    };
    if let Some(reason) = &refused {
        tracing::warn!(%reason, "JSON API writes refused; reads are unaffected");
    }
    if config.jwt_secret.is_none() && config.allow_anonymous_writes && !loopback {
        tracing::warn!(
            %listen,
            "anyone who can reach this address may write events and tasks: authentication is \
             off and --allow-anonymous-writes is set"
        );
    }
    api::WriteGate { anonymous, refused }
}
