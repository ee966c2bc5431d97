//! Bus mode (`--nats-url`): notifications fanned out over NATS, so that PostgreSQL signals a
//! fixed number of listeners however many instances run.
//!
//! At most `--pg-listeners` instances hold a listener seat (an advisory lock, see
//! [`crate::db::seats`]) and LISTEN; each republishes every notification, byte for byte, on the
//! NATS subject of its task ([`subject`], [`publisher`]). Every instance subscribes only to the
//! subjects of the tasks it watches ([`subscriptions`]). NATS core delivers at most once, which
//! the rest of the pipeline already tolerates: a tail repairs a gap from the table and the poll
//! catches a lost last event, so a lost or repeated message costs a read, never an event. When
//! NATS is unreachable ([`link`]) an instance LISTENs itself until it is back (or, with
//! `--nats-fallback false`, relies on the poll). The seat and the LISTEN themselves live on the
//! LISTEN connection ([`crate::live::pg_listener`]).

mod link;
mod publisher;
mod subject;
mod subscriptions;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub(crate) use self::publisher::Publisher;
use crate::config::BusConfig;
use crate::live::hub::Hub;
use crate::live::interest::Changes;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Longest a start waits for NATS before it starts in fallback (the first connection is
/// usually a matter of milliseconds).
const START_WAIT: Duration = Duration::from_secs(2);

/// The NATS subject that notifications on PostgreSQL `channel` about `task` travel on under
/// `prefix` (`None`: those about every task): what NATS permissions name, and what a test that
/// plays a hostile NATS publisher publishes to.
pub fn subject(prefix: &str, channel: &str, task: Option<&str>) -> String {
    subject::publish(prefix, channel, task)
}

/// Why bus mode could not start: files it cannot read, or an address it cannot use.
#[derive(Debug)]
pub struct BusError(String);

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BusError {}

/// What the LISTEN connection needs of bus mode.
#[derive(Debug)]
pub(crate) struct Bus {
    /// Whether NATS is up; while it is not, the LISTEN connection falls back to LISTEN.
    pub(crate) up: watch::Receiver<bool>,
    /// Where a seat holder republishes notifications.
    pub(crate) publisher: Publisher,
}

/// Connects to NATS, subscribes to the notifications that name no task and follows the hub's
/// `changes` of interest, until `shutdown`.
pub(crate) async fn start(
    config: &BusConfig,
    hub: Hub,
    metrics: Arc<Metrics>,
    changes: Changes,
    shutdown: Shutdown,
) -> Result<Bus, BusError> {
    let prefix: Arc<str> = Arc::from(config.nats_subject_prefix.as_str());
    let (client, wake) = link::connect(config).await?;
    // Made before the first flush, which then confirms it.
    let everyone = client
        .subscribe(subject::watch(&prefix, None))
        .await
        .map_err(|e| BusError(format!("cannot subscribe on NATS: {e}")))?;
    tokio::spawn(subscriptions::run(
        client.clone(),
        prefix.clone(),
        everyone,
        hub.clone(),
        metrics.clone(),
        changes,
        shutdown.clone(),
    ));
    let (up, up_watch) = watch::channel(false);
    let link = link::Link {
        client: client.clone(),
        wake,
        up,
        hub,
        metrics: metrics.clone(),
        fallback: config.nats_fallback,
    };
    link.first_connection(START_WAIT).await;
    tokio::spawn(link.run(shutdown.clone()));
    Ok(Bus {
        up: up_watch,
        publisher: publisher::spawn(client, prefix, metrics, shutdown),
    })
}
