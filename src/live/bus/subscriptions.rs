//! The NATS subscriptions of bus mode: one per watched task, following the hub's announcements
//! (subscribed when the task's tail starts, unsubscribed when it ends), plus one for the
//! notifications that name no task. Every message goes to the hub as the notification it
//! carries, verified and read by the hub's key cell.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_nats::Subscriber;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use crate::live::bus::subject;
use crate::live::hub::Hub;
use crate::live::interest::{Changes, Interest};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Follows `changes` until `shutdown`, with `everyone` (the subscription to the notifications
/// that name no task) already made.
pub(super) async fn run(
    client: async_nats::Client,
    prefix: Arc<str>,
    everyone: Subscriber,
    hub: Hub,
    metrics: Arc<Metrics>,
    mut changes: Changes,
    mut shutdown: Shutdown,
) {
    let everyone = tokio::spawn(forward(everyone, hub.clone(), metrics.clone()));
    // One forwarding task per watched task; aborting it drops its subscriber, which
    // unsubscribes.
    let mut watched: HashMap<Arc<str>, JoinHandle<()>> = HashMap::new();
    metrics.bus.nats_subscriptions.set(1);
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = shutdown.wait() => None,
        };
        match change {
            Some(Interest::Watch(task)) => {
                let subject = subject::watch(&prefix, Some(&task));
                let forwarder = tokio::spawn(subscribe(
                    client.clone(),
                    subject,
                    hub.clone(),
                    metrics.clone(),
                ));
                if let Some(stale) = watched.insert(task, forwarder) {
                    stale.abort();
                }
            }
            Some(Interest::Unwatch(task)) => {
                if let Some(forwarder) = watched.remove(&task) {
                    forwarder.abort();
                }
            }
            None => break,
        }
        metrics.bus.nats_subscriptions.set(watched.len() as i64 + 1);
    }
    everyone.abort();
    for forwarder in watched.into_values() {
        forwarder.abort();
    }
    metrics.bus.nats_subscriptions.set(0);
}

/// Subscribes to `subject` and forwards what arrives. While NATS is down the subscription is
/// made when it is back (the client re-sends every subscription on reconnect).
async fn subscribe(client: async_nats::Client, subject: String, hub: Hub, metrics: Arc<Metrics>) {
    match client.subscribe(subject).await {
        Ok(subscriber) => forward(subscriber, hub, metrics).await,
        // Only a closed client fails here (the server stopping); the poll covers the task.
        Err(error) => tracing::warn!(%error, "NATS subscription failed"),
    }
}

async fn forward(mut subscriber: Subscriber, hub: Hub, metrics: Arc<Metrics>) {
    while let Some(message) = subscriber.next().await {
        metrics.bus.nats_received.inc();
        let channel = subject::channel(message.subject.as_str()).unwrap_or_default();
        hub.notify(
            hub.keys()
                .parse_bus(channel, &message.payload, Instant::now()),
        );
    }
}
