//! A seat holder's republishing: every notification its LISTEN connection receives goes to NATS
//! byte for byte, on the subject of the task it names. The LISTEN connection hands each one over
//! without waiting (a queue, dropped from when full), because NATS being slow or gone must never
//! hold up the notifications this instance delivers itself.

use std::sync::Arc;

use async_nats::connection::State;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::live::bus::subject;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Notifications waiting to be published. Beyond, they are dropped: NATS delivers at most once
/// anyway, and every receiver repairs a gap from the table.
const QUEUE: usize = 4096;

/// The LISTEN connection's end of the queue.
#[derive(Debug)]
pub(crate) struct Publisher {
    /// Subjects and payloads for the publishing task.
    queue: mpsc::Sender<(String, Bytes)>,
    /// `--nats-subject-prefix`.
    prefix: Arc<str>,
}

impl Publisher {
    /// Queues a notification received on `channel` about `task` (`None`: every task), its
    /// `payload` exactly as PostgreSQL sent it.
    pub(crate) fn offer(&self, channel: &str, task: Option<&str>, payload: &str) {
        let subject = subject::publish(&self.prefix, channel, task);
        let payload = Bytes::copy_from_slice(payload.as_bytes());
        if self.queue.try_send((subject, payload)).is_err() {
            tracing::debug!("NATS publish queue full; a notification is dropped");
        }
    }
}

/// Starts publishing on `client` what the returned [`Publisher`] is offered, until `shutdown`.
pub(super) fn spawn(
    client: async_nats::Client,
    prefix: Arc<str>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> Publisher {
    let (queue, queued) = mpsc::channel(QUEUE);
    tokio::spawn(run(client, queued, metrics, shutdown));
    Publisher { queue, prefix }
}

async fn run(
    client: async_nats::Client,
    mut queued: mpsc::Receiver<(String, Bytes)>,
    metrics: Arc<Metrics>,
    mut shutdown: Shutdown,
) {
    loop {
        let (subject, payload) = tokio::select! {
            next = queued.recv() => match next {
                Some(message) => message,
                None => return,
            },
            _ = shutdown.wait() => return,
        };
        // While NATS is down the client would only queue it, and then wait: every receiver
        // LISTENs itself meanwhile (or polls), so it is not worth keeping.
        if client.connection_state() != State::Connected {
            continue;
        }
        match client.publish(subject, payload).await {
            Ok(()) => {
                metrics.bus.nats_published.inc();
            }
            Err(error) => tracing::debug!(%error, "NATS publish failed"),
        }
    }
}
