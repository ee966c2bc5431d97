//! The LISTEN connection: one per process, dedicated (not pooled), driven with
//! `Connection::poll_message`, which is the only way tokio-postgres hands out notifications.
//!
//! When it drops (PostgreSQL restarted, backend terminated) it reconnects with capped backoff,
//! re-issues LISTEN, and has the hub re-check every watched task, because notifications sent
//! while it was down are gone.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db;
use crate::live::hub::Hub;
use crate::live::notice::Notice;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// `application_name` of the LISTEN connection, so operators (and tests) can tell it apart
/// from the pool's connections in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "taskstream-listen";

/// First wait before reconnecting; doubled after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Keeps a LISTEN connection up until `shutdown`, feeding the hub. `ready` is sent once the
/// first LISTEN is in place (or the first attempt failed, with the error).
pub(crate) async fn run(
    mut config: tokio_postgres::Config,
    hub: Hub,
    metrics: Arc<Metrics>,
    ready: oneshot::Sender<Result<(), tokio_postgres::Error>>,
    mut shutdown: Shutdown,
) {
    config.application_name(APPLICATION_NAME);
    let mut ready = Some(ready);
    let mut backoff = MIN_BACKOFF;
    let mut connected_before = false;
    loop {
        let session = listen(&config, &hub, &mut ready, &metrics, connected_before);
        let ended = tokio::select! {
            ended = session => ended,
            _ = shutdown.wait() => return,
        };
        match ended {
            Ok(()) => {
                // It was up, so the next attempt starts from the shortest wait.
                backoff = MIN_BACKOFF;
                connected_before = true;
                tracing::warn!("LISTEN connection closed; reconnecting");
            }
            Err(error) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(Err(error));
                    // The caller decides whether a failed start is fatal; keep trying anyway.
                    continue;
                }
                tracing::warn!(%error, ?backoff, "LISTEN connection failed; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: connect, LISTEN, then route notifications until it ends. `Ok` means
/// it was established and later lost; `Err` that it could not be established.
async fn listen(
    config: &tokio_postgres::Config,
    hub: &Hub,
    ready: &mut Option<oneshot::Sender<Result<(), tokio_postgres::Error>>>,
    metrics: &Metrics,
    reconnect: bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let mut drive = Box::pin(async move {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    metrics.notifications.inc();
                    hub.notify(Notice::parse(
                        notification.channel(),
                        notification.payload(),
                        Instant::now(),
                    ));
                }
                Some(Ok(_)) => {} // notices
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            }
        }
    });
    let listen = db::listen_statement();
    let listening = client.batch_execute(&listen);
    tokio::select! {
        result = listening => result?,
        ended = &mut drive => return ended,
    }
    if reconnect {
        metrics.listen_reconnects.inc();
    }
    // Whatever was notified while no LISTEN was in place is lost: re-check everything.
    hub.poll_now();
    if let Some(ready) = ready.take() {
        let _ = ready.send(Ok(()));
    }
    tracing::debug!("LISTEN connection established");
    let ended = drive.await;
    drop(client);
    if let Err(error) = ended {
        tracing::warn!(%error, "LISTEN connection lost");
    }
    Ok(())
}
