//! The hub: one shared tail per watched task, fed by the LISTEN connection and the poll timer.
//!
//! Every client of a task subscribes to that task's tail (created on the first subscription,
//! dropped with the last). The tail follows the task's latest session, turns each new event
//! into SSE bytes once, and broadcasts the same `Bytes` to every subscriber. Notifications are
//! routed here by [`Hub::notify`]; the poll timer runs one batched query for the positions of
//! all watched tasks per tick and hands each tail its observation. How a tail reacts lives in
//! [`crate::live::tail`]; how a client uses its subscription lives in [`crate::client_stream`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::time::MissedTickBehavior;

use crate::db::{Db, TaskPosition};
use crate::live::interest::{Announcer, Interest};
use crate::live::notice::Notice;
use crate::live::tail::{self, Live, TailHandle};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Tasks per batched position query of the poll.
const POLL_CHUNK: usize = 2000;

/// The hub. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    /// The tails by task id. Held only for map operations and `try_send`s, never across await.
    tails: Mutex<HashMap<Arc<str>, TailEntry>>,
    /// Where tails read rows.
    db: Db,
    /// Rows per tail read.
    batch: i64,
    /// Counters (live tails).
    metrics: Arc<Metrics>,
    /// Wakes the poller before its next tick (LISTEN reconnected, or an unaddressed notice).
    poll_now: Notify,
    /// Where tails starting and ending are announced (bus mode: the NATS subscriptions).
    interest: Option<Announcer>,
}

/// One watched task: its running tail and how many subscriptions hold it.
#[derive(Debug)]
struct TailEntry {
    tail: TailHandle,
    /// Open subscriptions; the entry is removed when it drops to zero, ending the tail task.
    subscribers: usize,
}

/// A client's place on a tail. Dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription {
    /// What the tail publishes from the moment of subscribing.
    pub(crate) live: broadcast::Receiver<Live>,
    hub: Arc<HubInner>,
    task_id: Arc<str>,
}

impl Hub {
    /// A hub whose tails read from `db`, `batch` rows at a time, and that announces each tail
    /// it starts or ends to `interest`.
    pub(crate) fn new(
        db: Db,
        batch: i64,
        metrics: Arc<Metrics>,
        interest: Option<Announcer>,
    ) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                tails: Mutex::new(HashMap::new()),
                db,
                batch,
                metrics,
                poll_now: Notify::new(),
                interest,
            }),
        }
    }

    /// Subscribes to the task's tail, starting it if it is the first subscription. Everything
    /// the tail publishes from now on reaches the returned receiver.
    pub(crate) fn subscribe(&self, task_id: &str) -> Subscription {
        let task_id: Arc<str> = Arc::from(task_id);
        let mut tails = self.inner.lock();
        let entry = tails.entry(task_id.clone()).or_insert_with(|| {
            self.inner.metrics.live_tails.inc();
            self.inner.announce(Interest::Watch(task_id.clone()));
            TailEntry {
                tail: tail::spawn(task_id.clone(), self.inner.db.clone(), self.inner.batch),
                subscribers: 0,
            }
        });
        entry.subscribers += 1;
        Subscription {
            live: entry.tail.subscribe(),
            hub: self.inner.clone(),
            task_id,
        }
    }

    /// Routes a notification to the tail it concerns (if the task is watched here).
    pub(crate) fn notify(&self, notice: Notice) {
        let Some(task) = notice.task() else {
            return self.poll_now();
        };
        let tails = self.inner.lock();
        let Some(entry) = tails.get(task) else {
            return;
        };
        match notice {
            Notice::Event { event, .. } => entry.tail.event(event),
            Notice::TaskChanged { .. } => entry.tail.reread(),
            Notice::Unknown => {}
        }
    }

    /// Makes the poller check every watched task now: after a LISTEN reconnect, notifications
    /// sent while it was down are lost.
    pub(crate) fn poll_now(&self) {
        self.inner.poll_now.notify_one();
    }

    /// The number of tails (watched tasks).
    pub(crate) fn tail_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// The safety net: every `interval` (or when woken), one batched query for the positions
    /// of every watched task, and each tail gets its observation. Runs until `shutdown`.
    pub(crate) async fn run_poller(self, interval: Duration, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.inner.poll_now.notified() => {}
                _ = shutdown.wait() => return,
            }
            self.poll_once().await;
        }
    }

    async fn poll_once(&self) {
        let watched: Vec<Arc<str>> = self.inner.lock().keys().cloned().collect();
        for chunk in watched.chunks(POLL_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|id| &**id).collect();
            let mut found: HashMap<String, TaskPosition> = match self.inner.db.positions(&ids).await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(error) => {
                    tracing::warn!(%error, "poll failed; retrying at the next tick");
                    return;
                }
            };
            let tails = self.inner.lock();
            for id in chunk {
                if let Some(entry) = tails.get(id) {
                    entry.tail.observed(found.remove(&**id));
                }
            }
        }
    }
}

impl HubInner {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, TailEntry>> {
        // A panic while holding this lock cannot leave the map half-updated (every critical
        // section is a single map operation), so a poisoned lock is still consistent.
        self.tails
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn announce(&self, change: Interest) {
        if let Some(interest) = &self.interest {
            interest.announce(change);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut tails = self.hub.lock();
        if let Some(entry) = tails.get_mut(&self.task_id) {
            entry.subscribers -= 1;
            if entry.subscribers == 0 {
                tails.remove(&self.task_id);
                self.hub.metrics.live_tails.dec();
                self.hub.announce(Interest::Unwatch(self.task_id.clone()));
            }
        }
    }
}
