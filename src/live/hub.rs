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
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast};
use tokio::time::MissedTickBehavior;

use crate::db::{Cause, Db, PageLimit, TaskPosition};
use crate::live::interest::{Announcer, Interest};
use crate::live::notice::{KeyCell, Notice, TaskChange};
use crate::live::poll_gate::HintGate;
use crate::live::tail::{self, Live, TailHandle};
use crate::live::task_feed::{ListChange, TaskFeed};
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
    /// How much one tail read may return.
    limit: PageLimit,
    /// Counters (live tails, forged notifications).
    metrics: Arc<Metrics>,
    /// Wakes the poller before its next tick: the LISTEN connection or NATS (re)connected.
    poll_now: Notify,
    /// Where tails starting and ending are announced (bus mode: the NATS subscriptions).
    interest: Option<Announcer>,
    /// Wakes the poller before its next tick if its [`HintGate`] lets it: a notice that names
    /// nothing, or a forged one.
    poll_hint: Notify,
    /// The key every notification is verified with, whichever way it arrived.
    keys: KeyCell,
    /// Where task notifications also go, for the live task list.
    feed: TaskFeed,
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
    /// Holds the tail while it lives. Apart from `live`, so that a multi-task stream can move
    /// the receiver into the future that waits on it.
    pub(crate) watching: Watching,
}

/// Keeps a task watched; dropping it unsubscribes (the last one drops the tail).
#[derive(Debug)]
pub(crate) struct Watching {
    hub: Arc<HubInner>,
    task_id: Arc<str>,
}

impl Hub {
    /// A hub whose tails read from `db`, within `limit` at a time, and that announces each tail
    /// it starts or ends to `interest`.
    pub(crate) fn new(
        db: Db,
        limit: PageLimit,
        metrics: Arc<Metrics>,
        interest: Option<Announcer>,
    ) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                tails: Mutex::new(HashMap::new()),
                feed: TaskFeed::spawn(db.clone()),
                db,
                limit,
                metrics,
                poll_now: Notify::new(),
                interest,
                poll_hint: Notify::new(),
                keys: KeyCell::default(),
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
                tail: tail::spawn(task_id.clone(), self.inner.db.clone(), self.inner.limit),
                subscribers: 0,
            }
        });
        entry.subscribers += 1;
        Subscription {
            live: entry.tail.subscribe(),
            watching: Watching {
                hub: self.inner.clone(),
                task_id,
            },
        }
    }

    /// Routes a notification to the tail it concerns (if the task is watched here). One that
    /// names nothing, or is forged (counted here, whichever source it came from), is only a
    /// hint to poll.
    pub(crate) fn notify(&self, notice: Notice) {
        let Some(task) = notice.task() else {
            match notice {
                Notice::Unknown => self.inner.feed.resync(),
                Notice::Forged => {
                    self.inner.metrics.notifications_forged.inc();
                }
                Notice::Event { .. } | Notice::TaskChanged { .. } => {}
            }
            return self.inner.poll_hint.notify_one();
        };
        if let Notice::TaskChanged { .. } = &notice {
            self.inner.feed.changed(task);
        }
        let tails = self.inner.lock();
        let Some(entry) = tails.get(task) else {
            return;
        };
        match notice {
            Notice::Event { event, .. } => entry.tail.event(event),
            Notice::TaskChanged {
                change: TaskChange::Ended,
                ..
            } => entry.tail.reread(),
            Notice::TaskChanged { .. } | Notice::Unknown | Notice::Forged => {}
        }
    }

    /// Every change of the task list from now on (see [`TaskFeed`]).
    pub(crate) fn task_list(&self) -> broadcast::Receiver<ListChange> {
        self.inner.feed.subscribe()
    }

    /// The key notifications are verified with: the LISTEN connection sets it, every source of
    /// notifications reads with it.
    pub(crate) fn keys(&self) -> &KeyCell {
        &self.inner.keys
    }

    /// Makes the poller check every watched task now, and task-list clients resync: after a
    /// LISTEN or NATS (re)connect, notifications sent while it was down are lost.
    pub(crate) fn poll_now(&self) {
        self.inner.feed.resync();
        self.inner.poll_now.notify_one();
    }

    /// The number of tails (watched tasks).
    pub(crate) fn tail_count(&self) -> usize {
        self.inner.lock().len()
    }

    /// The safety net: every `interval` (or when woken), one batched query for the positions
    /// of every watched task, and each tail gets its observation. Hints wake it at most once
    /// per interval. Runs until `shutdown`.
    pub(crate) async fn run_poller(self, interval: Duration, mut shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut hints = HintGate::new(interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.inner.poll_now.notified() => {}
                _ = self.inner.poll_hint.notified() => {
                    if !hints.admit(Instant::now()) {
                        continue;
                    }
                    ticker.reset();
                }
                _ = shutdown.wait() => return,
            }
            self.poll_once().await;
        }
    }

    /// One poll tick. A chunk that fails because of its data (an id PostgreSQL cannot take
    /// fails the whole batch) is halved until the id is alone, so that it never stops delivery
    /// for the others; the tick goes on with the next chunk. Any other failure (an unavailable
    /// database) ends the tick early, since every chunk would fail alike.
    async fn poll_once(&self) {
        let watched: Vec<Arc<str>> = self.inner.lock().keys().cloned().collect();
        let mut pending: Vec<&[Arc<str>]> = watched.chunks(POLL_CHUNK).rev().collect();
        while let Some(chunk) = pending.pop() {
            let ids: Vec<&str> = chunk.iter().map(|id| &**id).collect();
            let mut found: HashMap<String, TaskPosition> = match self.inner.db.positions(&ids).await
            {
                Ok(rows) => rows.into_iter().collect(),
                Err(error) if error.cause() != Cause::Request => {
                    tracing::warn!(%error, "poll failed; retrying at the next tick");
                    return;
                }
                Err(error) if chunk.len() > 1 => {
                    tracing::debug!(%error, tasks = chunk.len(), "poll batch refused; halving it");
                    let (first, second) = chunk.split_at(chunk.len() / 2);
                    pending.extend([second, first]);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(task = %chunk[0], %error, "cannot poll this task");
                    continue;
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

impl Drop for Watching {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_postgres::NoTls;

    use super::*;
    use crate::db;
    use crate::embedded_pg::Cluster;
    use crate::live::tail::Live;

    /// An id PostgreSQL cannot take (a NUL) in the watched set fails the batched poll of its
    /// chunk; the chunk is halved until that id is alone, and every other task is observed.
    /// (Requests cannot bring such an id any more; this is the poll's own guard.)
    #[tokio::test]
    async fn an_id_the_database_refuses_does_not_stop_the_poll() {
        let cluster = tokio::task::spawn_blocking(Cluster::start)
            .await
            .expect("cluster thread")
            .expect("a private cluster");
        let url = cluster.url("postgres");
        db::apply_schema(&url).await.expect("schema");
        let (writer, connection) = tokio_postgres::connect(&url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        db::start_task(&writer, "good", "a good task")
            .await
            .expect("task");
        db::insert_event(&writer, "good", "s1", "assistant", "hello")
            .await
            .expect("event");

        let metrics = Arc::new(Metrics::default());
        let config = db::pg_config(&url).expect("url");
        let pool = Db::new(config, 2, Duration::from_secs(5), metrics.clone());
        let limit = PageLimit {
            rows: 100,
            bytes: 1 << 20,
        };
        let hub = Hub::new(pool, limit, metrics, None);
        let _bad = hub.subscribe("bad\0id");
        let mut good = hub.subscribe("good");
        hub.poll_once().await;
        let observed = tokio::time::timeout(Duration::from_secs(10), good.live.recv()).await;
        assert!(
            matches!(observed, Ok(Ok(Live::Advanced { seq: 1, .. }))),
            "{observed:?}"
        );
    }
}
