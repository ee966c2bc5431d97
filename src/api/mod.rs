//! The JSON API beside the stream: programs write events and tasks and read them without
//! holding a stream. The router (`crate::http::router`) sends each endpoint here.
//!
//! # Layout
//! - [`input`]: what a request body and the `Idempotency-Key` header say, checked strictly
//!   (pure).
//! - [`access`]: who may read and write, and whether the server's login can write.
//! - [`events`]: `POST /tasks/{id}/events` and `GET /tasks/{id}/events`.
//! - [`tasks`]: `PUT /tasks/{id}`, and `GET /tasks/{id}` and `GET /tasks` as JSON.
//! - [`openapi`]: `GET /openapi.json`.
//! - [`prune_keys`]: expired idempotency keys are deleted now and then.

pub(crate) mod access;
pub(crate) mod events;
pub(crate) mod input;
pub(crate) mod openapi;
pub(crate) mod tasks;

pub(crate) use self::access::WriteGate;

use std::time::Duration;

use crate::db::Db;
use crate::shutdown::Shutdown;

/// How often expired idempotency keys are pruned, at most: a key is treated as expired by its
/// age whether or not it is pruned yet, so pruning only bounds the table's size.
const PRUNE_EVERY: Duration = Duration::from_secs(15 * 60);

/// Deletes idempotency keys older than `window` now and then, until shutdown. Every instance
/// prunes; a delete of rows another one deleted meanwhile deletes nothing.
pub(crate) async fn prune_keys(db: Db, window: Duration, mut shutdown: Shutdown) {
    let every = PRUNE_EVERY.min(window);
    loop {
        match db.prune_keys(window).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "expired idempotency keys pruned"),
            Err(error) => tracing::warn!(%error, "cannot prune idempotency keys"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.wait() => return,
        }
    }
}
