//! The NATS connection of bus mode: its options from the configuration, and whether it is up.
//!
//! "Up" means connected *and* confirmed by a flush: the client re-sends every subscription when
//! it reconnects, before the flush's PING, so once the PONG is back the server routes this
//! instance's subjects to it, and an instance that ends its fallback LISTEN then misses nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{ConnectOptions, ServerAddr};
use tokio::sync::{Notify, watch};

use crate::config::BusConfig;
use crate::live::bus::BusError;
use crate::live::hub::Hub;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Interval of the client's PINGs: a NATS server that vanished without closing the connection
/// is noticed after two unanswered ones (the client's default of 60 s would take minutes).
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait for a flush's PONG before the connection is taken as not up yet.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the connection's state is read besides the client's own events, which it may drop
/// when many come at once.
const STATE_CHECK: Duration = Duration::from_millis(250);

/// Opens the client. It connects in the background and keeps reconnecting for as long as it
/// lives, so an unreachable NATS is no error here; unreadable credentials or TLS files are.
/// The returned [`Notify`] is woken on every event of the connection.
pub(super) async fn connect(
    config: &BusConfig,
) -> Result<(async_nats::Client, Arc<Notify>), BusError> {
    let mut options = match &config.nats_creds {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| BusError(format!("cannot read --nats-creds {}: {e}", path.display())))?,
        None => ConnectOptions::new(),
    };
    if let Some(token) = &config.nats_token {
        let token = token
            .as_text()
            .ok_or_else(|| BusError("--nats-token is not UTF-8".to_owned()))?;
        options = options.token(token.to_owned());
    }
    if let Some(ca) = &config.nats_tls_ca {
        readable(ca, "--nats-tls-ca")?;
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        readable(cert, "--nats-tls-cert")?;
        readable(key, "--nats-tls-key")?;
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let wake = Arc::new(Notify::new());
    let woken = wake.clone();
    let options = options
        .name(concat!("taskstream ", env!("CARGO_PKG_VERSION")))
        // A seat holder delivers what it publishes itself, from its own LISTEN.
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .ping_interval(PING_INTERVAL)
        .event_callback(move |_| {
            let wake = woken.clone();
            async move { wake.notify_one() }
        });
    let servers = config
        .nats_urls
        .iter()
        .map(|url| url.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BusError(format!("invalid --nats-url: {e}")))?;
    let client = options
        .connect(servers)
        .await
        .map_err(|e| BusError(format!("cannot use NATS: {e}")))?;
    Ok((client, wake))
}

/// Fails with a message naming `flag` unless `path` can be read (the client reads it only when
/// it connects, and would then retry forever).
fn readable(path: &Path, flag: &str) -> Result<(), BusError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| BusError(format!("cannot read {flag} {}: {e}", path.display())))
}

/// Follows the connection's state and publishes whether it is up.
pub(super) struct Link {
    pub(super) client: async_nats::Client,
    /// Woken by every event of the client (connected, disconnected, errors).
    pub(super) wake: Arc<Notify>,
    /// Whether NATS is up, for the LISTEN connection (which falls back while it is not).
    pub(super) up: watch::Sender<bool>,
    /// Re-checks every watched task when NATS comes back, for what was missed while it was down.
    pub(super) hub: Hub,
    pub(super) metrics: Arc<Metrics>,
    /// `--nats-fallback`, for the warning.
    pub(super) fallback: bool,
}

impl Link {
    /// Waits up to `wait` for the first connection, so that an instance starting beside a
    /// running NATS starts in bus mode rather than in fallback. Not up by then is a fallback.
    pub(super) async fn first_connection(&self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            self.check().await;
            if *self.up.borrow() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return self.fell_back("NATS is unreachable at start");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(left.min(STATE_CHECK)) => {}
            }
        }
    }

    /// Follows the connection until `shutdown`.
    pub(super) async fn run(self, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(STATE_CHECK);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = ticker.tick() => {}
                _ = shutdown.wait() => break,
            }
            self.check().await;
        }
        self.up.send_replace(false);
        self.metrics.bus.nats_connected.set(0);
    }

    async fn check(&self) {
        let connected = self.client.connection_state() == State::Connected;
        let up = *self.up.borrow();
        if connected && !up {
            let confirmed = tokio::time::timeout(FLUSH_TIMEOUT, self.client.flush()).await;
            if matches!(confirmed, Ok(Ok(()))) {
                self.up.send_replace(true);
                self.metrics.bus.nats_connected.set(1);
                tracing::info!("NATS is up: notifications arrive through the bus");
                self.hub.poll_now();
            }
        } else if !connected && up {
            self.up.send_replace(false);
            self.metrics.bus.nats_connected.set(0);
            self.fell_back("NATS is unreachable");
        }
    }

    fn fell_back(&self, why: &str) {
        self.metrics.bus.nats_fallbacks.inc();
        if self.fallback {
            tracing::warn!("{why}: listening to PostgreSQL directly until it is back");
        } else {
            tracing::warn!("{why}: relying on the poll until it is back (--nats-fallback false)");
        }
    }
}
