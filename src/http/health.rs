//! `/readyz`'s view of PostgreSQL: a health state that at most one query at a time refreshes.
//! However many probes arrive at once (a load balancer's, a thousand clients'), the database
//! sees one `SELECT 1`, and a probe never waits behind more than one.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::db::Db;

/// How long an answer stands before a probe asks PostgreSQL again: short beside any probe's
/// period, long beside a burst of probes.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Longest a refresh waits for PostgreSQL before the state says "not ready".
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The last known health of the database.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The last answer (ready or not) and when it arrived.
    last: Mutex<Option<(Instant, bool)>>,
    /// Held by the one probe that refreshes the state; the others wait for its answer.
    refreshing: tokio::sync::Mutex<()>,
}

impl Health {
    /// Whether PostgreSQL answers: the state, refreshed first if it is stale.
    pub(crate) async fn ready(&self, db: &Db) -> bool {
        if let Some(ready) = self.fresh() {
            return ready;
        }
        let _turn = self.refreshing.lock().await;
        // Whoever held the turn before may just have refreshed it.
        if let Some(ready) = self.fresh() {
            return ready;
        }
        let ready = match tokio::time::timeout(PING_TIMEOUT, db.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(%error, "not ready");
                false
            }
            Err(_) => {
                tracing::warn!("not ready: PostgreSQL did not answer in {PING_TIMEOUT:?}");
                false
            }
        };
        *self.lock() = Some((Instant::now(), ready));
        ready
    }

    /// The last answer, if it is still fresh.
    fn fresh(&self) -> Option<bool> {
        let last = *self.lock();
        last.and_then(|(at, ready)| (at.elapsed() < FRESH_FOR).then_some(ready))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, bool)>> {
        // The state is a plain value, written whole: a panic elsewhere cannot leave it torn.
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
