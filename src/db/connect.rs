//! How the pool opens a connection: with `statement_timeout` as a startup option, so that
//! PostgreSQL itself cancels a stuck query, or without it behind a pooler that refuses startup
//! options. PgBouncer does (`unsupported startup parameter: options`) unless it is told
//! `ignore_startup_parameters = options`; there the client-side deadline of every query (see
//! `Db::query`) is what bounds it, and the operator can set `statement_timeout` on the role.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, Error, NoTls};

/// What `deadpool_postgres::Connect` returns.
type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<(Client, JoinHandle<()>), Error>> + Send + 'a>>;

/// Opens the pool's connections.
pub(super) struct Connector {
    /// The settings plus the `statement_timeout` startup option.
    with_timeout: Config,
    /// Set once the server refused the startup option: later connections go without it.
    refused: AtomicBool,
    /// Set once the server accepted it. Once either is set, connections no longer wait on
    /// `probe`.
    accepted: AtomicBool,
    /// Held by the one connection that asks while the answer is unknown, so that connections
    /// opened together (a burst at start) ask a refusing pooler once, not once each.
    probe: tokio::sync::Mutex<()>,
}

impl Connector {
    /// Connects with `config` plus `statement_timeout`, falling back to `config` alone.
    pub(super) fn new(config: &Config, statement_timeout: Duration) -> Connector {
        let mut with_timeout = config.clone();
        with_timeout.options(format!(
            "-c statement_timeout={}",
            statement_timeout.as_millis()
        ));
        Connector {
            with_timeout,
            refused: AtomicBool::new(false),
            accepted: AtomicBool::new(false),
            probe: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the server has answered the startup option, either way.
    fn answered(&self) -> bool {
        self.accepted.load(Ordering::Acquire) || self.refused.load(Ordering::Acquire)
    }

    async fn open(&self, plain: &Config) -> Result<(Client, JoinHandle<()>), Error> {
        // Held only while the answer is unknown (also when it came while waiting for the lock):
        // once refused, connections must not queue behind each other for ever.
        let probing = match self.answered() {
            true => None,
            false => Some(self.probe.lock().await),
        };
        let _probing = probing.filter(|_| !self.answered());
        if !self.refused.load(Ordering::Acquire) {
            match self.with_timeout.connect(NoTls).await {
                Ok(pair) => {
                    self.accepted.store(true, Ordering::Release);
                    return Ok(drive(pair));
                }
                Err(error) if refuses_startup_options(&error) => {
                    self.refused.store(true, Ordering::Release);
                    tracing::warn!(
                        %error,
                        "the database refused the statement_timeout startup option (a pooler \
                         such as PgBouncer?): connecting without it; every query is still \
                         bounded by the client-side deadline, and ALTER ROLE … SET \
                         statement_timeout bounds it on the server too"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        plain.connect(NoTls).await.map(drive)
    }
}

impl deadpool_postgres::Connect for Connector {
    fn connect(&self, plain: &Config) -> Connecting<'_> {
        let plain = plain.clone();
        Box::pin(async move { self.open(&plain).await })
    }
}

/// Whether `error` is a server's refusal of the `options` startup parameter: PgBouncer answers
/// `08P01` "unsupported startup parameter: options".
fn refuses_startup_options(error: &Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        *db.code() == SqlState::PROTOCOL_VIOLATION && db.message().contains("startup parameter")
    })
}

/// Drives a new connection in its own task (ended when the pool drops the client).
fn drive(
    (client, connection): (
        Client,
        tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    ),
) -> (Client, JoinHandle<()>) {
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection ended");
        }
    });
    (client, driver)
}
